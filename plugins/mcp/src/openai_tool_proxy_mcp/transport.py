"""The SDK's transports, built from a server's configuration and watched: the proxy learns that
a connection is over when it happens — a stdio server's process exited, an SSE stream closed,
a Streamable HTTP server forgot the session — rather than from the next call that fails."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import TracebackType

import anyio
import httpx2
from mcp import StdioServerParameters
from mcp.client import Transport
from mcp.client._transport import ReadStream, TransportStreams
from mcp.client.sse import sse_client
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.message import SessionMessage

from openai_tool_proxy_mcp.config import ServerConfig

SESSION_HEADER = "mcp-session-id"


def transport_for(
    config: ServerConfig, ended: Callable[[], None], forgotten: Callable[[], None]
) -> Transport:
    """A transport to `config`'s server that calls `ended` once the server's side of it ends,
    and `forgotten` when a Streamable HTTP server answers 404 to the session (it restarted, or
    let the session expire): the spec's sign to start a new one."""
    if config.transport == "stdio":
        parameters = StdioServerParameters(
            command=config.command, args=list(config.args), env=dict(config.env), cwd=config.cwd
        )
        inner: Transport = stdio_client(parameters)
    elif config.transport == "sse":
        inner = sse_client(config.url, headers=dict(config.headers))
    else:
        inner = _streamable_http(config, forgotten)
    return _Watched(inner, ended)


@asynccontextmanager
async def _streamable_http(
    config: ServerConfig, forgotten: Callable[[], None]
) -> AsyncIterator[TransportStreams]:
    async def on_response(response: httpx2.Response) -> None:
        if response.status_code == 404 and SESSION_HEADER in response.request.headers:
            forgotten()

    http = create_mcp_http_client(headers=dict(config.headers))  # with the SDK's timeouts
    http.event_hooks["response"].append(on_response)
    async with http, streamable_http_client(config.url, http_client=http) as streams:
        yield streams


class _Watched:
    """`inner`, whose read stream calls `ended` when it ends."""

    def __init__(self, inner: Transport, ended: Callable[[], None]) -> None:
        self._inner = inner
        self._ended = ended

    async def __aenter__(self) -> TransportStreams:
        read, write = await self._inner.__aenter__()
        return _EndWatch(read, self._ended), write

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        return await self._inner.__aexit__(exc_type, exc, tb)


class _EndWatch:
    """A read stream that calls `ended` when the stream it reads ends."""

    def __init__(
        self, inner: ReadStream[SessionMessage | Exception], ended: Callable[[], None]
    ) -> None:
        self._inner = inner
        self._ended = ended

    async def receive(self) -> SessionMessage | Exception:
        try:
            return await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            self._ended()
            raise

    def __aiter__(self) -> _EndWatch:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> _EndWatch:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
