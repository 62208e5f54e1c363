"""Shutdown with a bound: in-flight requests get `drain_timeout` seconds, then are ended.

uvicorn, asked to stop (SIGTERM, Ctrl+C), closes its listener and waits for every open
connection — however long a stream runs, or a tool. The proxy's `Server` starts a drain
instead: readiness answers 503, in-flight requests may finish within `drain_timeout`, and
then each one still running is cancelled. A stream relayed so far ends at a frame boundary
with the API's own error event (`RelayResponse`); a request not answered yet gets a 503
(`Drain.guard`). A second Ctrl+C ends them at once. uvicorn's own graceful-shutdown timeout,
a little longer, stays as a backstop.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any

import uvicorn
from starlette.requests import Request
from starlette.responses import Response

from proxy.errors import APIError
from proxy.server import config

log = logging.getLogger("proxy")

SHUTTING_DOWN = "The proxy is shutting down; retry the request."
SHUTTING_DOWN_CODE = "server_shutting_down"
BACKSTOP = 1.0  # seconds uvicorn waits beyond the drain before cancelling on its own
FORCED = 128 + signal.SIGINT  # exit status after a second Ctrl+C, as shells report one

Endpoint = Callable[[Request], Awaitable[Response]]


class Drain:
    """Whether the proxy is draining, and the requests in flight to end when time is up."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.draining = False
        self.expired = False
        self._tasks: set[asyncio.Task[Any]] = set()

    def guard(self, endpoint: Endpoint) -> Endpoint:
        """`endpoint`, its request in flight until the response ends; ended by the drain
        before it answered, it answers 503 in the OpenAI error format."""

        async def guarded(request: Request) -> Response:
            task = asyncio.current_task()
            assert task is not None
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            try:
                return await endpoint(request)
            except asyncio.CancelledError:
                if not self.expired:
                    raise
                task.uncancel()
                raise APIError.of(
                    503, SHUTTING_DOWN, "server_error", code=SHUTTING_DOWN_CODE
                ) from None

        return guarded

    def start(self) -> asyncio.TimerHandle:
        """Begin draining; the returned timer ends what is left when `timeout` passes."""
        self.draining = True
        return asyncio.get_running_loop().call_later(self.timeout, self.expire)

    def expire(self) -> None:
        """End every request still in flight (once)."""
        if self.expired:
            return
        self.expired = True
        if self._tasks:
            log.warning("shutting down: ending %d request(s) still in flight", len(self._tasks))
        for task in self._tasks:
            task.cancel(SHUTTING_DOWN)


class Server(uvicorn.Server):
    """uvicorn's server, whose shutdown drains the app's requests within their bound."""

    def __init__(self, config: uvicorn.Config, drain: Drain) -> None:
        super().__init__(config)
        self.drain = drain

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if self.force_exit:  # a second Ctrl+C: end the requests now, on the loop's next turn
            asyncio.get_running_loop().call_soon_threadsafe(self.drain.expire)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        timer = self.drain.start()
        try:
            await super().shutdown(sockets)
        finally:
            timer.cancel()
        if self.force_exit:  # uvicorn then skips the app's shutdown; the proxy's is quick
            await self.lifespan.shutdown()


def run(
    app: Any,
    drain: Drain,
    host: str,
    port: int,
    sockets: list[socket.socket] | None = None,
    **options: Any,
) -> int:
    """Serve `app` until SIGTERM or Ctrl+C, drain it, and return the exit status: 0, or
    `FORCED` when a second Ctrl+C cut the drain short. `sockets`: already listening (a worker
    of `proxy.workers`), instead of binding `host` and `port`.

    uvicorn raises the signals it handled again once it has stopped, for the handlers it
    found: Python's would end the process by the signal or with a `KeyboardInterrupt`
    traceback. The handlers found here only ask the server to stop — as it already has.
    """
    timeout = drain.timeout + BACKSTOP
    server = Server(config(app, host, port, timeout_graceful_shutdown=timeout, **options), drain)

    def stop(sig: int, frame: FrameType | None) -> None:
        server.should_exit = True

    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, stop) for sig in signals}
    signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)  # a worker is forked with them blocked
    try:
        server.run(sockets)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return FORCED if server.force_exit else 0
