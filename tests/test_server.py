"""uvicorn as the proxy runs it: a response's head goes out with its first body bytes, and
never waits for them longer than the event loop's turn."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from proxy.server import _HeadHolder
from tests.servers import serve

HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n"


class Recorder:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> str:
        return f"extra:{name}"


async def test_the_head_goes_out_with_the_first_body_bytes() -> None:
    recorder = Recorder()
    holder = _HeadHolder(recorder, asyncio.get_running_loop())  # type: ignore[arg-type]
    holder.write(HEAD)
    assert recorder.writes == []
    holder.write(b"5\r\nhello\r\n")
    holder.write(b"0\r\n\r\n")
    await asyncio.sleep(0)
    assert recorder.writes == [HEAD + b"5\r\nhello\r\n", b"0\r\n\r\n"]


async def test_a_head_alone_goes_out_when_the_loop_turn_ends() -> None:
    recorder = Recorder()
    holder = _HeadHolder(recorder, asyncio.get_running_loop())  # type: ignore[arg-type]
    holder.write(HEAD)
    await asyncio.sleep(0)
    assert recorder.writes == [HEAD]


async def test_an_interim_response_is_not_held() -> None:
    recorder = Recorder()
    holder = _HeadHolder(recorder, asyncio.get_running_loop())  # type: ignore[arg-type]
    holder.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert recorder.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    holder.write(HEAD)
    assert len(recorder.writes) == 1  # the final head is held as usual


async def test_close_sends_a_held_head_first() -> None:
    recorder = Recorder()
    holder = _HeadHolder(recorder, asyncio.get_running_loop())  # type: ignore[arg-type]
    holder.write(HEAD)
    holder.close()
    assert recorder.writes == [HEAD]
    assert recorder.closed
    assert holder.get_extra_info("peername") == "extra:peername"


async def test_a_live_response_head_does_not_wait_for_a_slow_body() -> None:
    gate = threading.Event()

    async def slow(request: Request) -> Response:
        async def body() -> AsyncIterator[bytes]:
            await asyncio.to_thread(gate.wait, 5)
            yield b"late"

        return StreamingResponse(body(), headers={"x-early": "yes"})

    async def empty(request: Request) -> Response:
        return Response(status_code=204)

    app = Starlette(routes=[Route("/slow", slow), Route("/empty", empty, methods=["HEAD", "GET"])])
    with serve(app) as base:
        async with httpx.AsyncClient(base_url=base, timeout=5) as client:
            async with client.stream("GET", "/slow") as response:
                assert response.headers["x-early"] == "yes"  # before the body was released
                gate.set()
                assert await response.aread() == b"late"
            assert (await client.head("/empty")).status_code == 204
            assert (await client.get("/empty")).status_code == 204
