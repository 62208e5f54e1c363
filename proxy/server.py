"""uvicorn, as the proxy runs it: a response's head goes out with its first body bytes, and a
request's head is bounded while it arrives.

uvicorn writes the status line and headers the moment the app starts a response, and each
body part on its own. For a relayed stream, that is one syscall and one wake-up of the
client more, before the first token, than the bytes need (measured: README, Performance).
`HttpProtocol` holds the head until the response's next write — the proxy sends the first
body bytes right after starting a response — or, at the latest, until the event loop's
current turn ends, so no response waits on it.

httptools sets no bound on a request's head, and buffers each header whole before uvicorn
sees it: `HttpProtocol` counts the bytes of a head still arriving and answers `431` once
they pass the limit. It parses nothing more on that connection; what the client still sends
is discarded until it closes, for at most `LINGER` seconds — closing at once would reset the
connection under a client still sending, and many (asyncio ones) then lose the answer.

`HttpProtocol` relies on uvicorn internals (`METHODS`, `ATTRIBUTES`): `config` checks them, and
serves with plain uvicorn (and a warning) when they changed. pyproject.toml bounds the
tested versions.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from proxy.admission import head_too_large, refused
from proxy.config import Settings

log = logging.getLogger("proxy")

LINGER = 5.0  # seconds a refused connection is read (and discarded) before it is closed


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
    """uvicorn's httptools protocol, writing a response's head with its first body bytes and
    refusing a request head that grows past `max_head` bytes."""

    max_head = Settings().max_header_bytes  # `config` makes a subclass with the setting's
    _head_bytes: int | None = None  # bytes of the request head being read; None between heads
    _refused = False

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        super().data_received(data)
        if self._head_bytes is not None:  # every byte of this read belongs to the head
            self._head_bytes += len(data)
            if self._head_bytes > self.max_head and not self.transport.is_closing():
                self._refuse_head()

    def _refuse_head(self) -> None:
        """Answer 431 — unless a response is under way on this connection, which the answer
        would corrupt — and parse nothing more: the connection ends when the client closes
        it, or `LINGER` seconds later."""
        self._refused = True
        error = head_too_large(self.max_head)
        refused(error, self.client)
        if self.cycle is None or self.cycle.response_complete:
            lines = [b"HTTP/1.1 431 Request Header Fields Too Large"]
            lines += [name + b": " + value for name, value in self.server_state.default_headers]
            lines += [f"{name}: {value}".encode() for name, value in error.headers.items()]
            lines += [b"content-length: %d" % len(error.body), b"connection: close"]
            self.transport.write(b"\r\n".join(lines) + b"\r\n\r\n" + error.body)
        self.loop.call_later(LINGER, self.transport.close)

    def on_headers_complete(self) -> None:
        self._head_bytes = None  # a complete head is measured exactly by `proxy.admission`
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and not isinstance(cycle.transport, _HeadHolder):
            cycle.transport = _HeadHolder(self.transport, self.loop)  # type: ignore[assignment]


# What `HttpProtocol` relies on in uvicorn: the methods it overrides or calls, with their
# parameters, and the attributes it reads, by the class whose `__init__` sets them.
Methods = tuple[tuple[type, str, tuple[str, ...]], ...]
Attributes = tuple[tuple[type, tuple[str, ...]], ...]
METHODS: Methods = (
    (HttpToolsProtocol, "on_message_begin", ("self",)),
    (HttpToolsProtocol, "on_headers_complete", ("self",)),
    (HttpToolsProtocol, "data_received", ("self", "data")),
)
ATTRIBUTES: Attributes = (
    (HttpToolsProtocol, ("transport", "loop", "cycle", "client", "server_state")),
    (RequestResponseCycle, ("transport", "response_complete")),
    (ServerState, ("default_headers",)),
)


def shape_problem(methods: Methods = METHODS, attributes: Attributes = ATTRIBUTES) -> str | None:
    """What of uvicorn is not as `HttpProtocol` expects it, or None."""
    for cls, name, parameters in methods:
        method = getattr(cls, name, None)
        if not inspect.isfunction(method):
            return f"{cls.__name__}.{name} is not a method"
        found = tuple(inspect.signature(method).parameters)
        if found != parameters:
            return f"{cls.__name__}.{name} takes {found}, not {parameters}"
    for cls, names in attributes:
        init = vars(cls).get("__init__")
        assigned = init.__code__.co_names if inspect.isfunction(init) else ()
        missing = [name for name in names if name not in assigned]
        if missing:
            return f"{cls.__name__} no longer sets {', '.join(missing)}"
    return None


def config(
    app: Any,
    host: str,
    port: int,
    max_header_bytes: int = HttpProtocol.max_head,
    **options: Any,
) -> uvicorn.Config:
    """uvicorn's configuration for the proxy: `HttpProtocol` (heads up to `max_header_bytes`),
    on uvloop where installed — or uvicorn's own httptools protocol, with a warning, when
    uvicorn's internals are not those `HttpProtocol` was written for."""
    http: type[asyncio.Protocol] | str
    problem = shape_problem()
    if problem is None:

        class Protocol(HttpProtocol):
            max_head = max_header_bytes

        http = Protocol
    else:
        log.warning(
            "uvicorn %s is not the one the proxy's HTTP protocol was written for (%s): "
            "serving with uvicorn's own (request heads are then only bounded once read; "
            "responses are a little slower to start)",
            uvicorn.__version__,
            problem,
        )
        http = "httptools"
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="auto",
        http=http,
        server_header=False,
        **options,
    )


def run(app: Any, host: str, port: int, **options: Any) -> None:
    """Serve `app` until interrupted."""
    uvicorn.Server(config(app, host, port, **options)).run()
