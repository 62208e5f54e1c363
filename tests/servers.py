"""Real servers on loopback for tests: the proxy under uvicorn, and a scripted upstream —
under uvicorn in a thread, or in the running event loop for the in-process app."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from http.client import responses
from typing import Any

import httptools
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from proxy.server import config
from tests.upstream import Reply, ScriptedUpstream

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
        query = request.url.query
        target = request.scope["raw_path"].decode("latin-1") + (f"?{query}" if query else "")
        reply = script.answer(request.method, target, request.headers.raw, await request.body())

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


# Seconds between two pieces of a reply served in the loop. The proxy shares the loop, so it
# has read a piece before the next one is written: a torn reply arrives torn.
GAP = 0.001


class Loopback:
    """A scripted upstream on 127.0.0.1, served in the running event loop (`loopback`):
    it records each request as the proxy wrote it and answers from `script`, each reply
    piece by piece; an exception among the pieces resets the connection there."""

    def __init__(self, script: ScriptedUpstream | None) -> None:
        self.script = script
        self.url = ""
        self.errors: list[AssertionError] = []  # requests it had no reply for
        self.exchanges: set[_Exchange] = set()

    def reply_to(
        self, method: str, target: str, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> Reply:
        try:
            if self.script is None:
                raise AssertionError(f"the upstream got {method} {target} with no script")
            return self.script.answer(method, target, headers, body)
        except AssertionError as exc:
            self.errors.append(exc)
            error = {"error": {"message": str(exc), "type": "test_error"}}
            return Reply(json.dumps(error).encode(), 500, "application/json")


@asynccontextmanager
async def loopback(script: ScriptedUpstream | None = None) -> AsyncIterator[Loopback]:
    """Serve `script` (settable later: `.script`) on 127.0.0.1 until the block ends; then
    fail if a request came that it had no reply for."""
    upstream = Loopback(script)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Exchange(upstream), "127.0.0.1", 0)
    upstream.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
    try:
        yield upstream
    finally:
        server.close()
        for exchange in list(upstream.exchanges):
            exchange.reset()
        await server.wait_closed()
    if upstream.errors:
        raise upstream.errors[0]


class _Exchange(asyncio.Protocol):
    """One connection to the loopback upstream: requests parsed by httptools as they arrive,
    one at a time; each answered by a task that writes its reply piece by piece."""

    def __init__(self, upstream: Loopback) -> None:
        self.upstream = upstream
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport  # once connected
        self.task: asyncio.Task[None] | None = None
        self.target = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        self.upstream.exchanges.add(self)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:  # the test fails when the block ends
            self.upstream.errors.append(AssertionError(f"a malformed request: {exc!r}"))
            self.reset()

    def connection_lost(self, exc: Exception | None) -> None:
        self.upstream.exchanges.discard(self)
        if self.task is not None:
            self.task.cancel()

    def on_url(self, url: bytes) -> None:
        self.target += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        method, target = self.parser.get_method().decode(), self.target.decode("latin-1")
        reply = self.upstream.reply_to(method, target, self.headers, self.body)
        self.target, self.headers, self.body = b"", [], b""
        self.task = asyncio.get_running_loop().create_task(self.send(reply))

    async def send(self, reply: Reply) -> None:
        """The head, then each piece as its own write with `GAP` between them. An event
        stream is chunked, as real upstreams send one; any other body has its length."""
        chunked = reply.content_type == "text/event-stream"
        pieces = reply.pieces
        length = sum(len(p) for p in pieces if isinstance(p, bytes))
        headers = {"content-type": reply.content_type, **reply.headers}
        framing = "transfer-encoding: chunked" if chunked else f"content-length: {length}"
        head = [f"HTTP/1.1 {reply.status} {responses.get(reply.status, '')}", framing]
        head += [f"{name}: {value}" for name, value in headers.items()]
        self.transport.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        for i, piece in enumerate(pieces):
            if i:
                await asyncio.sleep(GAP)
            if isinstance(piece, Exception):  # the connection fails here
                self.reset()
                return
            if piece:
                self.transport.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
        if chunked:
            self.transport.write(b"0\r\n\r\n")

    def reset(self) -> None:
        """End the connection with a reset, as a crashed server or a middlebox does."""
        sock = self.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()
