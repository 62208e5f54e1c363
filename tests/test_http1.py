"""The upstream transport against real servers on loopback, scripted byte by byte."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from proxy.http1 import Http1Transport
from tests.servers import unaccepting_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
TIMEOUTS = {"connect": 2.0, "read": 2.0, "write": 2.0, "pool": 2.0}


async def serve(handler: Handler) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    body = b""
    lower = head.lower()
    if b"content-length:" in lower:
        length = int(lower.split(b"content-length:")[1].split(b"\r\n")[0])
        body = await reader.readexactly(length)
    elif b"transfer-encoding: chunked" in lower:
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
    return head, body


async def send(
    transport: Http1Transport,
    url: str,
    method: str = "POST",
    content: bytes | AsyncIterator[bytes] | None = b"{}",
    headers: dict[str, str] | None = None,
) -> tuple[httpx.Response, bytes]:
    request = httpx.Request(
        method, url, content=content, headers=headers, extensions={"timeout": TIMEOUTS}
    )
    response = await transport.handle_async_request(request)
    body = b"".join([part async for part in response.stream])  # type: ignore[union-attr]
    await response.aclose()
    return response, body


async def test_keep_alive_reuses_one_connection():
    connections = 0

    async def handler(reader, writer):
        nonlocal connections
        connections += 1
        while True:
            try:
                _, body = await read_request(reader)
            except asyncio.IncompleteReadError:
                break
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\nx-echo: 1\r\n\r\n%s" % (len(body), body)
            )

    server, url = await serve(handler)
    transport = Http1Transport()
    for i in range(3):
        response, body = await send(transport, url + "/v1/x?a=1", content=b'{"n": %d}' % i)
        assert (response.status_code, body) == (200, b'{"n": %d}' % i)
        assert response.headers["x-echo"] == "1"
    assert connections == 1
    await transport.aclose()
    server.close()


async def test_chunked_responses_stream_piece_by_piece():
    release = asyncio.Event()

    async def handler(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await release.wait()
        writer.write(b"6\r\nsecond\r\n0\r\n\r\n")

    server, url = await serve(handler)
    transport = Http1Transport()
    request = httpx.Request("POST", url, content=b"{}", extensions={"timeout": TIMEOUTS})
    response = await transport.handle_async_request(request)
    parts = aiter(response.stream)  # type: ignore[arg-type]
    assert await anext(parts) == b"first"  # before the server sends the rest
    release.set()
    assert b"".join([p async for p in parts]) == b"second"
    await transport.aclose()
    server.close()


async def test_request_bodies_stream_chunked_or_with_their_length():
    seen: list[tuple[bytes, bytes]] = []

    async def handler(reader, writer):
        while True:
            try:
                seen.append(await read_request(reader))
            except asyncio.IncompleteReadError:
                break
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")

    async def parts() -> AsyncIterator[bytes]:
        yield b"hello "
        yield b"world"

    server, url = await serve(handler)
    transport = Http1Transport()
    await send(transport, url, content=parts())
    await send(transport, url, content=parts(), headers={"content-length": "11"})
    assert [body for _, body in seen] == [b"hello world", b"hello world"]
    assert b"transfer-encoding: chunked" in seen[0][0].lower()
    assert b"content-length: 11" in seen[1][0].lower()
    await transport.aclose()
    server.close()


async def test_a_body_until_close_and_a_head_request():
    async def handler(reader, writer):
        head, _ = await read_request(reader)
        if head.startswith(b"HEAD"):
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 99\r\n\r\n")
        else:
            writer.write(b"HTTP/1.1 200 OK\r\n\r\nall of it")
            writer.close()

    server, url = await serve(handler)
    transport = Http1Transport()
    assert (await send(transport, url, content=None))[1] == b"all of it"
    response, body = await send(transport, url, method="HEAD", content=None)
    assert (response.headers["content-length"], body) == ("99", b"")
    await transport.aclose()
    server.close()


async def test_a_pooled_connection_closed_under_a_request_is_retried_once():
    """The server closes a kept-alive connection just as the next request goes out on it (it
    reads the request and hangs up without a byte): that request never reached it, so it goes
    out again on a fresh connection."""
    connections = 0
    answered = 0

    async def handler(reader, writer):
        nonlocal connections, answered
        connections += 1
        first = connections == 1
        await read_request(reader)
        answered += 1
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        if first:
            await read_request(reader)  # the next request on this connection: hang up
        writer.close()

    server, url = await serve(handler)
    transport = Http1Transport()
    await send(transport, url)
    assert len(transport.idle[("http", "127.0.0.1", int(url.rsplit(":", 1)[1]))]) == 1
    assert (await send(transport, url))[1] == b"ok"
    assert (connections, answered) == (2, 2)
    await transport.aclose()
    server.close()


async def test_a_post_is_never_sent_twice_after_a_timeout():
    """A reused connection whose upstream takes the request and stays silent: the read
    timeout ends it, once — sending it again would bill a second completion."""
    bodies: list[bytes] = []
    connections = 0

    async def handler(reader, writer):
        nonlocal connections
        connections += 1
        while True:
            _, body = await read_request(reader)
            bodies.append(body)
            if body == b"second":
                await asyncio.sleep(10)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()

    server, url = await serve(handler)
    transport = Http1Transport()
    await send(transport, url, content=b"first")
    request = httpx.Request(
        "POST", url, content=b"second", extensions={"timeout": {**TIMEOUTS, "read": 0.2}}
    )
    with pytest.raises(httpx.ReadTimeout):
        await transport.handle_async_request(request)
    assert bodies == [b"first", b"second"]
    assert connections == 1
    await transport.aclose()
    server.close()


async def test_an_interim_100_continue_is_not_the_answer():
    async def handler(reader, writer):
        while True:
            await read_request(reader)
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await writer.drain()
            await asyncio.sleep(0.05)  # the interim head arrives in a read of its own
            writer.write(b"HTTP/1.1 103 Early Hints\r\nlink: </x>\r\n\r\n")
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(b"HTTP/1.1 201 Created\r\ncontent-length: 4\r\nx-final: 1\r\n\r\n")
            writer.write(b"done")
            await writer.drain()

    server, url = await serve(handler)
    transport = Http1Transport()
    response, body = await send(transport, url)
    assert (response.status_code, body) == (201, b"done")
    assert response.headers.get("x-final") == "1" and "link" not in response.headers
    assert (await send(transport, url))[1] == b"done"  # the connection went back whole
    await transport.aclose()
    server.close()


def test_the_clients_expect_header_is_not_forwarded():
    from proxy.upstream import Upstream

    upstream = Upstream("http://127.0.0.1:9/v1")
    headers = upstream.request_headers([(b"expect", b"100-continue"), (b"x-kept", b"1")])
    assert (b"x-kept", b"1") in headers
    assert all(name != b"expect" for name, _ in headers)


async def test_failures_become_httpx_errors():
    async def cut(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
        await writer.drain()
        writer.close()

    async def silent(reader, writer):
        await read_request(reader)
        await asyncio.sleep(10)

    async def garbage(reader, writer):
        await read_request(reader)
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")

    transport = Http1Transport()
    server, url = await serve(cut)
    with pytest.raises(httpx.ReadError):
        await send(transport, url)
    server.close()
    server, url = await serve(garbage)
    with pytest.raises(httpx.RemoteProtocolError):
        await send(transport, url)
    server.close()
    server, url = await serve(silent)
    request = httpx.Request(
        "POST", url, content=b"{}", extensions={"timeout": {**TIMEOUTS, "read": 0.2}}
    )
    with pytest.raises(httpx.ReadTimeout):
        await transport.handle_async_request(request)
    server.close()
    closed_port = url.rsplit(":", 1)[1]
    await asyncio.sleep(0.05)
    with pytest.raises(httpx.ConnectError):
        await send(transport, f"http://127.0.0.1:{int(closed_port)}")
    await transport.aclose()


async def test_large_bodies_arrive_whole_with_back_pressure():
    blob = bytes(range(256)) * 40_000  # ~10 MB

    async def handler(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(blob))
        writer.write(blob)
        await writer.drain()

    server, url = await serve(handler)
    transport = Http1Transport()
    request = httpx.Request("POST", url, content=b"{}", extensions={"timeout": TIMEOUTS})
    response = await transport.handle_async_request(request)
    conn = response.stream.conn  # type: ignore[attr-defined]
    reading = conn.transport.is_reading
    received = []
    paused = False
    async for part in response.stream:  # type: ignore[union-attr]
        received.append(part)
        if not paused:  # a slow reader: the socket stops being read until it catches up
            for _ in range(500):
                if not reading():
                    break
                await asyncio.sleep(0.01)
            paused = not reading()
            assert paused and conn.buffered > 1 << 20
    assert b"".join(received) == blob
    assert reading() or conn.complete  # resumed, and read to the end
    await transport.aclose()
    server.close()


async def test_https_upstreams_verify_their_certificate():
    import ssl

    import trustme

    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server_context)

    async def handler(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nsecure")
        await writer.drain()

    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=server_context)
    url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    trusting = ssl.create_default_context()
    authority.configure_trust(trusting)
    transport = Http1Transport(trusting)
    assert (await send(transport, url))[1] == b"secure"
    await transport.aclose()
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        await send(Http1Transport(ssl.create_default_context()), url)
    server.close()


def test_an_http_proxy_in_the_environment_selects_httpx_pool(monkeypatch):
    from proxy.upstream import default_transport

    for name in (
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
    ):
        monkeypatch.delenv(name, raising=False)
    assert isinstance(default_transport("https://api.openai.com/v1"), Http1Transport)
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    assert isinstance(default_transport("https://api.openai.com/v1"), httpx.AsyncHTTPTransport)
    assert isinstance(default_transport("http://127.0.0.1:8000/v1"), Http1Transport)
    monkeypatch.setenv("NO_PROXY", "api.openai.com")
    assert isinstance(default_transport("https://api.openai.com/v1"), Http1Transport)


async def test_the_read_timeout_counts_from_the_last_byte():
    """A body that keeps trickling in never times out, however long it takes in all; one that
    stops mid-way does, once the read timeout passes without a byte."""

    async def trickle(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for _ in range(6):
            await asyncio.sleep(0.1)
            writer.write(b"1\r\nx\r\n")
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async def stall(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\nx\r\n")
        await asyncio.sleep(10)

    transport = Http1Transport()
    timeouts = {"extensions": {"timeout": {**TIMEOUTS, "read": 0.25}}}
    server, url = await serve(trickle)
    response = await transport.handle_async_request(
        httpx.Request("POST", url, content=b"{}", **timeouts)
    )
    assert b"".join([part async for part in response.stream]) == b"x" * 6
    server.close()
    server, url = await serve(stall)
    response = await transport.handle_async_request(
        httpx.Request("POST", url, content=b"{}", **timeouts)
    )
    with pytest.raises(httpx.ReadTimeout):
        async for _ in response.stream:
            pass
    server.close()
    await transport.aclose()


class Counted:
    """A keep-alive echo server that counts the connections it opened and saw closed."""

    def __init__(self) -> None:
        self.opened = 0
        self.closed = asyncio.Queue[int]()

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.opened += 1
        number = self.opened
        while True:
            try:
                await read_request(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        self.closed.put_nowait(number)


async def test_an_idle_connection_past_its_keep_alive_is_closed_not_reused(monkeypatch):
    import proxy.http1

    monkeypatch.setattr(proxy.http1, "_KEEPALIVE", 0.0)  # every idle connection is stale at once
    counted = Counted()
    server, url = await serve(counted)
    transport = Http1Transport()
    await send(transport, url)
    await send(transport, url)
    assert counted.opened == 2
    assert await asyncio.wait_for(counted.closed.get(), 2) == 1  # the stale one was closed
    await transport.aclose()
    server.close()


async def test_the_idle_pool_keeps_at_most_its_cap(monkeypatch):
    import proxy.http1

    monkeypatch.setattr(proxy.http1, "_MAX_IDLE", 2)
    counted = Counted()
    server, url = await serve(counted)
    transport = Http1Transport()
    await asyncio.gather(*(send(transport, url) for _ in range(4)))
    assert counted.opened == 4
    assert sum(len(idle) for idle in transport.idle.values()) == 2
    closed = {await asyncio.wait_for(counted.closed.get(), 2) for _ in range(2)}
    assert len(closed) == 2 and counted.closed.empty()  # two closed, two kept
    await transport.aclose()
    server.close()


async def test_a_body_the_upstream_does_not_read_ends_with_a_write_timeout():
    got_head = asyncio.Event()

    async def deaf(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        got_head.set()
        await asyncio.sleep(10)  # never reads the body

    server, url = await serve(deaf)
    transport = Http1Transport()
    request = httpx.Request(
        "POST", url, content=b"x" * (64 << 20), extensions={"timeout": {**TIMEOUTS, "write": 0.2}}
    )
    with pytest.raises(httpx.WriteTimeout):
        await transport.handle_async_request(request)
    assert got_head.is_set()
    await transport.aclose()
    server.close()


async def test_a_connection_the_upstream_never_accepts_ends_with_a_connect_timeout():
    transport = Http1Transport()
    with unaccepting_port() as port:
        request = httpx.Request(
            "POST",
            f"http://127.0.0.1:{port}",
            content=b"{}",
            extensions={"timeout": {**TIMEOUTS, "connect": 0.2}},
        )
        with pytest.raises(httpx.ConnectTimeout):
            await transport.handle_async_request(request)
    await transport.aclose()


async def test_a_request_cancelled_while_waiting_for_the_head_closes_its_connection():
    counted = Counted()
    heard = asyncio.Event()

    async def silent(reader, writer):
        counted.opened += 1
        await read_request(reader)
        heard.set()
        try:
            await reader.read()  # until the proxy hangs up
        finally:
            counted.closed.put_nowait(1)

    server, url = await serve(silent)
    transport = Http1Transport()
    waiting = asyncio.ensure_future(send(transport, url))
    await heard.wait()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert await asyncio.wait_for(counted.closed.get(), 2) == 1
    assert not any(transport.idle.values())
    await transport.aclose()
    server.close()
