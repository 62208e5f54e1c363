"""A lean HTTP/1.1 client transport for the upstream, behind httpx's transport API.

Why not httpx's own pool or aiohttp: measured on the benchmark (README, Performance), a
request through either costs several hundred microseconds of Python before the first byte,
and every relayed chunk passes through layers of stream wrappers. This transport is one
asyncio protocol per connection with httptools (the C parser uvicorn already uses) reading
the responses, a keep-alive pool, and nothing else: no cookies, redirects, proxies or
decompression — the proxy needs none of them (httpx's `Response` still decodes bodies).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from typing import Any

import httptools
import httpx

_HIGH_WATER = 1 << 20  # buffered body bytes before the socket stops being read
_KEEPALIVE = 60.0  # seconds an idle connection stays in the pool
_MAX_IDLE = 512  # idle connections kept per upstream


class _Connection(asyncio.Protocol):
    """One upstream connection: writes requests, parses responses as the bytes arrive."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self.timer: asyncio.TimerHandle | None = None
        self.patience = 0.0  # seconds a wait may go without a byte
        self.heard = 0.0  # loop time of the last byte, or of the start of a wait
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.reused = False
        self.idle_since = 0.0
        self._reset()
        self._writable: asyncio.Future[None] | None = None

    def _reset(self) -> None:
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.interim = False
        self.until_close = False
        self.complete = False
        self.keep_alive = False
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.paused = False
        self.got_bytes = False

    def start_exchange(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self._reset()
        self.disarm()

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        self.heard = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"invalid HTTP response from upstream: {exc}"))
            if self.transport is not None:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.head_done and self.until_close and exc is None:
            self.complete = True
            self._wake()
        if not self.complete:
            detail = f": {exc}" if exc else ""
            self._fail(httpx.RemoteProtocolError(f"the upstream closed the connection{detail}"))
        if self._writable is not None and not self._writable.done():
            self._writable.set_exception(httpx.WriteError("the upstream closed the connection"))

    def pause_writing(self) -> None:
        self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    # -- httptools callbacks ---------------------------------------------------------------

    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            # An interim response (`100 Continue`, `103 Early Hints`): the answer follows.
            self.interim = True
            self.headers = []
            self.reason = b""
            return
        self.status = status
        self.head_done = True
        names = {name.lower() for name, _ in self.headers}
        # No length and not chunked: the body runs until the server closes the connection.
        self.until_close = (
            b"content-length" not in names
            and b"transfer-encoding" not in names
            and self.status not in (204, 304)
            and self.status >= 200
        )
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > _HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            return
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()  # only true inside the callback
        self._wake()

    # -- used by the transport -------------------------------------------------------------

    def _fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def wait(self, seconds: float | None) -> None:
        """Wait for more of the response (head, body or end); fail once `seconds` pass
        without a byte.

        One timer per exchange, re-armed only when it fires early, rather than one per wait:
        a relayed chunk costs no timer of its own.
        """
        waiter = self.waiter = self.loop.create_future()
        if seconds is not None and self.timer is None:
            self.patience = seconds
            self.heard = self.loop.time()
            self.timer = self.loop.call_at(self.heard + seconds, self._check_patience)
        try:
            await waiter
        finally:
            self.waiter = None

    def _check_patience(self) -> None:
        self.timer = None
        if self.waiter is None or self.waiter.done():
            return  # not waiting: the next wait arms the timer again
        due = self.heard + self.patience
        if self.loop.time() < due:
            self.timer = self.loop.call_at(due, self._check_patience)
        else:
            self.waiter.set_exception(httpx.ReadTimeout("the upstream sent nothing in time"))

    def disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    async def write(self, data: bytes, seconds: float | None) -> None:
        """Write; wait (at most `seconds`) only while the socket's buffer is full."""
        if self.closed or self.transport is None:
            raise httpx.WriteError("the upstream connection is closed")
        self.transport.write(data)
        if self._writable is not None:
            await _within(self._writable, seconds, httpx.WriteTimeout)

    def take(self) -> bytes:
        data = b"".join(self.chunks) if len(self.chunks) > 1 else self.chunks[0]
        self.chunks.clear()
        self.buffered = 0
        if self.paused and self.transport is not None:
            self.paused = False
            self.heard = self.loop.time()  # the pause was the proxy's, not the upstream's
            self.transport.resume_reading()
        return data

    def reusable(self) -> bool:
        return self.complete and self.keep_alive and not self.closed

    def close(self) -> None:
        self.closed = True
        self.disarm()
        if self.transport is not None:
            self.transport.close()


class _Body(httpx.AsyncByteStream):
    """The response body, chunk by chunk as it arrives; the connection goes back to the pool
    once the body was read to its end."""

    def __init__(
        self,
        pool: Http1Transport,
        origin: tuple[str, str, int],
        conn: _Connection,
        timeout: float | None,
    ) -> None:
        self.pool = pool
        self.origin = origin
        self.conn = conn
        self.timeout = timeout
        self.done = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        conn = self.conn
        while True:
            if conn.chunks:
                yield conn.take()
            elif conn.complete:
                break
            elif conn.error is not None:
                raise httpx.ReadError(str(conn.error)) from conn.error
            else:
                await conn.wait(self.timeout)
        self.done = True
        await self.aclose()

    async def aclose(self) -> None:
        if self.conn is None:
            return
        conn, self.conn = self.conn, None  # type: ignore[assignment]
        if self.done and conn.reusable():
            self.pool.release(self.origin, conn)
        else:
            conn.close()


class Http1Transport(httpx.AsyncBaseTransport):
    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.ssl_context = ssl_context
        self.idle: dict[tuple[str, str, int], list[_Connection]] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        content = getattr(request, "_content", None)
        return await self._exchange(
            request.method,
            request.url,
            _head(request.method, request.url, request.headers.raw),
            content if isinstance(content, bytes) else None,
            request.stream,
            request.extensions.get("timeout", {}),
        )

    async def send_bytes(
        self,
        method: str,
        url: httpx.URL,
        headers: list[tuple[bytes, bytes]],
        content: bytes,
        timeouts: dict[str, float | None],
    ) -> httpx.Response:
        """`handle_async_request` for a body already in memory, without building an
        `httpx.Request` first: the proxy's own requests upstream, on the hot path."""
        head = _head(
            method,
            url,
            [
                (b"host", url.netloc),
                (b"content-length", b"%d" % len(content)),
                *headers,
            ],
        )
        return await self._exchange(method, url, head, content, None, timeouts)

    async def _exchange(
        self,
        method: str,
        url: httpx.URL,
        head: bytes,
        content: bytes | None,
        body: Any,
        timeouts: dict[str, float | None],
    ) -> httpx.Response:
        origin = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        for attempt in (1, 2):
            conn = await self._acquire(origin, timeouts.get("connect"))
            try:
                await self._send(conn, head, content, body, timeouts.get("write"))
                while not conn.head_done:
                    if conn.error is not None:
                        raise conn.error
                    await conn.wait(timeouts.get("read"))
            except httpx.HTTPError as exc:
                retry = attempt == 1 and content is not None and _never_reached(conn, exc)
                conn.close()
                if retry:
                    continue  # a pooled connection the server had closed: a fresh one, once
                if isinstance(exc, httpx.RemoteProtocolError) and not conn.got_bytes:
                    raise httpx.ReadError(str(exc)) from exc
                raise
            except BaseException:
                conn.close()
                raise
            break
        stream = _Body(self, origin, conn, timeouts.get("read"))
        if method == "HEAD":
            conn.complete = True  # no body follows, whatever the headers say
            conn.close()
        return httpx.Response(
            conn.status,
            headers=conn.headers,
            stream=stream,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": conn.reason},
        )

    async def _send(
        self,
        conn: _Connection,
        head: bytes,
        content: bytes | None,
        body: Any,
        seconds: float | None,
    ) -> None:
        try:
            if content is not None:
                await conn.write(head + content, seconds)
                return
            await conn.write(head, seconds)
            chunked = b"\r\ncontent-length:" not in head.lower()
            async for part in body:
                if part:
                    await conn.write(
                        b"%x\r\n%s\r\n" % (len(part), part) if chunked else part, seconds
                    )
            if chunked:
                await conn.write(b"0\r\n\r\n", seconds)
        except OSError as exc:
            raise httpx.WriteError(f"writing to the upstream failed: {exc}") from exc

    async def _acquire(self, origin: tuple[str, str, int], seconds: float | None) -> _Connection:
        idle = self.idle.get(origin)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < _KEEPALIVE:
                conn.reused = True
                conn.start_exchange()
                return conn
            conn.close()
        scheme, host, port = origin
        context = None
        if scheme == "https":
            context = self.ssl_context or ssl.create_default_context()
        loop = asyncio.get_running_loop()
        try:
            _, fresh = await _within(
                loop.create_connection(
                    _Connection,
                    host,
                    port,
                    ssl=context,
                    server_hostname=host if context else None,
                ),
                seconds,
                httpx.ConnectTimeout,
            )
        except OSError as exc:
            raise httpx.ConnectError(f"cannot connect to {host}:{port}: {exc}") from exc
        assert isinstance(fresh, _Connection)
        return fresh

    def release(self, origin: tuple[str, str, int], conn: _Connection) -> None:
        conn.disarm()
        now = conn.idle_since = time.monotonic()
        idle = self.idle.setdefault(origin, [])
        while idle and (idle[0].closed or now - idle[0].idle_since >= _KEEPALIVE):
            idle.pop(0).close()  # the oldest first: what a burst left behind goes in time
        if len(idle) < _MAX_IDLE:
            idle.append(conn)
        else:
            conn.close()

    async def aclose(self) -> None:
        for conns in self.idle.values():
            for conn in conns:
                conn.close()
        self.idle.clear()


def _never_reached(conn: _Connection, error: httpx.HTTPError) -> bool:
    """Whether a request failed on a pooled connection the server had already closed — so it
    provably never reached the upstream and may be sent again. Never after a timeout: the
    upstream may be working on it (a second completion, billed twice)."""
    closed = isinstance(error, httpx.WriteError | httpx.RemoteProtocolError) and conn.closed
    return conn.reused and not conn.got_bytes and closed


def _head(method: str, url: httpx.URL, headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """The request line and headers, as one write."""
    lines = [method.encode() + b" " + (url.raw_path or b"/") + b" HTTP/1.1"]
    lines += [name + b": " + value for name, value in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


async def _within(
    awaitable: Any, seconds: float | None, error: type[httpx.TimeoutException]
) -> Any:
    if seconds is None:
        return await awaitable
    try:
        return await asyncio.wait_for(awaitable, seconds)
    except TimeoutError:
        raise error(f"no progress in {seconds:g} s") from None
