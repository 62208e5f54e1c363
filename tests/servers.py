"""Real servers on loopback for tests: the proxy under uvicorn, and a scripted upstream."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from proxy.server import config
from tests.upstream import ScriptedUpstream

# The event loop of each server `serve` runs, by base URL: tests look inside (tasks, pools).
loops: dict[str, asyncio.AbstractEventLoop] = {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run `app` under uvicorn as the proxy runs it, on 127.0.0.1 in a thread; yield its base
    URL."""
    port = free_port()
    server = uvicorn.Server(config(app, "127.0.0.1", port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        threading.Event().wait(0.01)
    else:  # pragma: no cover
        raise RuntimeError("uvicorn did not start")
    url = f"http://127.0.0.1:{port}"
    loops[url] = server.servers[0].get_loop()
    try:
        yield url
    finally:
        del loops[url]
        server.should_exit = True
        thread.join(10)


@contextmanager
def unaccepting_port() -> Iterator[int]:
    """A port whose accept queue is full: a new connection to it waits for ever."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        try:
            for _ in range(4):  # fill the queue (its length is the backlog plus one, or so)
                filler = socket.socket()
                filler.setblocking(False)
                filler.connect_ex(("127.0.0.1", port))
                fillers.append(filler)
            yield port
        finally:
            for filler in fillers:
                filler.close()


def upstream_app(
    script: ScriptedUpstream, gate: threading.Event | None = None, pace: float = 0
) -> Starlette:
    """An HTTP server answering every path from `script`; with `pace`, that many seconds
    pass between two pieces of a reply.

    With `gate`, it sends the first piece of each reply, then waits for the gate before the
    rest — so a test can tell streaming from buffering: a test sets the gate once the client
    saw the first piece; if the proxy held it back instead, the wait gives up after 5 s and
    counts in `script.stalled`.
    """

    async def handle(request: Request) -> Response:
        body = await request.body()
        script.paths.append(f"{request.method} {request.url.path}?{request.url.query}")
        reply = script.next_reply(body, dict(request.headers))

        async def pieces() -> Any:
            for i, piece in enumerate(reply.pieces):
                if i == 1 and gate is not None and not await asyncio.to_thread(gate.wait, 5):
                    script.stalled += 1
                if i and pace:
                    await asyncio.sleep(pace)
                yield piece

        return StreamingResponse(
            pieces(),
            status_code=reply.status,
            headers={"content-type": reply.content_type, **reply.headers},
        )

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    return Starlette(routes=[Route("/{path:path}", handle, methods=methods)])
