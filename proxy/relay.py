"""The streamed response every relayed body goes out as.

Starlette's `StreamingResponse` opens an anyio task group per request to notice a client that
leaves; on the hot path that costs more than the rest of the relay. Here a plain task waits
for the disconnect and cancels the relay — which closes the upstream response, so a client
that gives up stops the model too.

A stitched stream (whole SSE frames in every part) can also be kept alive: while nothing
reaches the client — a tool runs, a model thinks — an SSE comment goes out, so that load
balancers and clients with read timeouts do not drop it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable

from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

KEEPALIVE: Message = {"type": "http.response.body", "body": b": keep-alive\n\n", "more_body": True}


class Last(bytes):
    """The last bytes of a relayed body."""

    __slots__ = ()


class RelayResponse(Response):
    """`body` relayed as it comes; cancelled other than by the client leaving (the server is
    shutting down), it ends between two parts with `ending()`'s bytes, or with none, so the
    client gets a well-formed response (for a stitched stream, the API's error event)."""

    def __init__(
        self,
        status_code: int,
        raw_headers: list[tuple[bytes, bytes]],
        body: AsyncGenerator[bytes],
        first: bytes = b"",
        on_end: Callable[[], Awaitable[None]] | None = None,  # before the last bytes go out
        *,
        ending: Callable[[], bytes] | None = None,
        keepalive: float = 0,
    ) -> None:
        self.status_code = status_code
        self.raw_headers = raw_headers
        self.first = first
        self.body_iterator = body
        self.on_end = on_end
        self.ending = ending
        self.keepalive = keepalive  # seconds; 0: never (a body whose parts are not frames)
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        relay = asyncio.current_task()
        assert relay is not None
        left = False
        chunk = self.first
        more = type(chunk) is not Last

        async def watch() -> None:
            nonlocal left
            while (await receive())["type"] != "http.disconnect":
                pass
            left = True
            relay.cancel()

        async def keep_alive() -> None:
            """Every half interval, a comment if no part went out since the last look (the
            part last relayed is still `chunk`): never an interval without bytes, and no
            clock read per part."""
            seen: bytes | None = None
            while True:
                await asyncio.sleep(self.keepalive / 2)
                if chunk is not seen:
                    seen = chunk
                elif more:  # never after the last part
                    await send(KEEPALIVE)
                    seen = None  # the comment was a write: the next look skips

        watcher = pinger = None
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            if not more and self.on_end is not None:
                await self.on_end()
            if chunk or not more:
                await send({"type": "http.response.body", "body": chunk, "more_body": more})
            # After the first bytes, no delay to them: a client that left by now is noticed
            # at the next part.
            watcher = asyncio.create_task(watch())
            if self.keepalive and more:
                pinger = asyncio.create_task(keep_alive())
            async for chunk in self.body_iterator:
                more = type(chunk) is not Last
                if not more and self.on_end is not None:
                    await self.on_end()
                await send({"type": "http.response.body", "body": chunk, "more_body": more})
            if more:
                more = False
                if self.on_end is not None:
                    await self.on_end()
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            relay.uncancel()
            more = False
            if not left and self._may_end_early():  # the server is stopping
                assert self.ending is not None
                end = self.ending()
                # Cancelled again (uvicorn's backstop, a client that does not read): cut.
                with contextlib.suppress(asyncio.CancelledError):
                    await send({"type": "http.response.body", "body": end, "more_body": False})
            return
        finally:
            if watcher is not None:
                watcher.cancel()
            if pinger is not None:
                pinger.cancel()
            # Close the body now, not when it is collected: when the relay stopped at a write
            # to the client, the body waits at a part, its upstream response still open.
            with contextlib.suppress(asyncio.CancelledError):
                await self.body_iterator.aclose()

    def _may_end_early(self) -> bool:
        """Whether the body can end well-formed before it is all relayed: only with an
        ending of its own (a stitched stream's error event). A body relayed as is may stop
        mid-event, or mid-file: its connection is closed, so the client sees it cut rather
        than a truncated body that looks whole."""
        return self.ending is not None
