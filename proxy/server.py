"""uvicorn, as the proxy runs it: a response's head goes out with its first body bytes.

uvicorn writes the status line and headers the moment the app starts a response, and each
body part on its own. For a relayed stream, that is one syscall and one wake-up of the
client more, before the first token, than the bytes need (measured: README, Performance).
`HttpProtocol` holds the head until the response's next write — the proxy sends the first
body bytes right after starting a response — or, at the latest, until the event loop's
current turn ends, so no response waits on it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class _HeadHolder:
    """The client transport as one response sees it: its head is held for the next write."""

    __slots__ = ("_expecting_head", "_head", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._head: bytes | None = None
        self._expecting_head = True

    def write(self, data: bytes) -> None:
        if self._expecting_head and data.startswith(b"HTTP/1.1 ") and data[9:10] != b"1":
            self._expecting_head = False  # the final head, not an interim `100 Continue`
            self._head = data
            self._loop.call_soon(self._flush)
            return
        if self._head is not None:
            data, self._head = self._head + data, None
        self._transport.write(data)

    def _flush(self) -> None:
        if self._head is not None:
            head, self._head = self._head, None
            if not self._transport.is_closing():
                self._transport.write(head)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, writing a response's head with its first body bytes."""

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and not isinstance(cycle.transport, _HeadHolder):
            cycle.transport = _HeadHolder(self.transport, self.loop)  # type: ignore[assignment]


def config(app: Any, host: str, port: int, **options: Any) -> uvicorn.Config:
    """uvicorn's configuration for the proxy: `HttpProtocol`, on uvloop where installed."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="auto",
        http=HttpProtocol,
        server_header=False,
        **options,
    )


def run(app: Any, host: str, port: int, **options: Any) -> None:
    """Serve `app` until interrupted."""
    uvicorn.Server(config(app, host, port, **options)).run()
