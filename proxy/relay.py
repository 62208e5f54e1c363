"""The streamed response every relayed body goes out as.

Starlette's `StreamingResponse` opens an anyio task group per request to notice a client that
leaves; on the hot path that costs more than the rest of the relay. Here a plain task waits
for the disconnect and cancels the relay — which closes the upstream response, so a client
that gives up stops the model too.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from starlette.responses import Response
from starlette.types import Receive, Scope, Send


class Last(bytes):
    """The last bytes of a relayed body."""

    __slots__ = ()


class RelayResponse(Response):
    def __init__(
        self,
        status_code: int,
        raw_headers: list[tuple[bytes, bytes]],
        body: AsyncIterator[bytes],
        first: bytes = b"",
        on_end: Callable[[], None] | None = None,
    ) -> None:
        self.status_code = status_code
        self.raw_headers = raw_headers
        self.first = first
        self.body_iterator = body
        self.on_end = on_end
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        relay = asyncio.current_task()
        assert relay is not None
        left = False

        async def watch() -> None:
            nonlocal left
            while (await receive())["type"] != "http.disconnect":
                pass
            left = True
            relay.cancel()

        watcher = asyncio.create_task(watch())
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            more = type(self.first) is not Last
            if self.first:
                await send({"type": "http.response.body", "body": self.first, "more_body": more})
            async for chunk in self.body_iterator:
                more = type(chunk) is not Last
                await send({"type": "http.response.body", "body": chunk, "more_body": more})
            if more:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not left:
                raise
            relay.uncancel()  # the client left: nothing more to do
            return
        finally:
            watcher.cancel()
        if self.on_end is not None:
            self.on_end()
