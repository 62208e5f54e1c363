"""uvicorn as the proxy runs it: a response's head goes out with its first body bytes, and
never waits for them longer than the event loop's turn; one `date`, the proxy's own; and the
uvicorn internals this relies on, checked."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from proxy import server
from proxy.app import create_app
from proxy.config import Settings
from proxy.server import HttpProtocol, _HeadHolder, config, shape_problem
from tests import servers
from tests.chunks import calls_round, completion
from tests.conftest import SERVER_TOOLS
from tests.servers import serve, upstream_app
from tests.upstream import Reply, ScriptedUpstream, text_stream

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


class RecordingTransport:
    """A connection's transport that notes each write before making it."""

    def __init__(self, transport: asyncio.Transport, writes: list[bytes]) -> None:
        self._transport = transport
        self.writes = writes

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def test_a_live_response_head_and_its_first_body_bytes_are_one_write(monkeypatch) -> None:
    """Under uvicorn as the proxy runs it, on a connection kept alive across responses — a
    stitched stream, a relayed stream and a JSON body — each head goes to the socket in the
    same write as the first bytes of its body."""
    writes: list[bytes] = []

    def recording_config(*args: Any, **options: Any) -> Any:
        made = config(*args, **options)

        class Recording(made.http):  # type: ignore[name-defined, misc]
            def connection_made(self, transport: asyncio.Transport) -> None:
                super().connection_made(RecordingTransport(transport, writes))

        made.http = Recording
        return made

    script = ScriptedUpstream(
        calls_round(("c1", "weather", '{"location": "Lima"}')),
        Reply(text_stream("Warm", "chatcmpl-2")),
        Reply(b"data: relayed\n\n"),
        completion({"role": "assistant", "content": "Cold"}),
    )
    chat = {"model": "m", "messages": [{"role": "user", "content": "weather"}]}
    with serve(upstream_app(script)) as upstream:
        monkeypatch.setattr(servers, "config", recording_config)
        app = create_app(Settings(upstream=upstream + "/v1"), SERVER_TOOLS)
        with serve(app) as proxy, httpx.Client(base_url=proxy + "/v1", timeout=5) as http:
            stitched = http.post("/chat/completions", json={**chat, "stream": True})
            relayed = http.get("/anything")
            whole = http.post("/chat/completions", json=chat)
    assert [r.status_code for r in (stitched, relayed, whole)] == [200, 200, 200]
    heads = [w for w in writes if w.startswith(b"HTTP/1.1 ")]
    assert len(heads) == 3
    for head, body in zip(heads, [b"data: {", b"data: relayed", b'{"id"'], strict=True):
        assert body in head.partition(b"\r\n\r\n")[2], head


# -- the proxy's response is its own: one `date`, no upstream `server` --------------------


CALL = {"id": "c2", "type": "function", "function": {"name": "weather", "arguments": "{}"}}


def test_every_response_carries_one_date_and_at_most_one_server():
    script = ScriptedUpstream(
        calls_round(("c1", "weather", '{"location": "Lima"}')),
        Reply(text_stream("Warm", "chatcmpl-2")),
        completion({"role": "assistant", "tool_calls": [CALL]}, finish="tool_calls"),
        completion({"role": "assistant", "content": "Cold"}, id="chatcmpl-2"),
        Reply(b'{"data": []}', content_type="application/json"),
        Reply(b'{"error": {"message": "slow down"}}', 429, "application/json"),
        Reply(b'{"error": {"message": "nope"}}', 404, "application/json"),
    )
    for reply in script.replies:  # and the upstream's uvicorn stamps its own `date`
        reply.headers["server"] = "upstream/1.0"
    chat = {"model": "m", "messages": [{"role": "user", "content": "weather"}]}
    with serve(upstream_app(script)) as upstream:
        app = create_app(Settings(upstream=upstream + "/v1"), SERVER_TOOLS)
        with serve(app) as proxy, httpx.Client(base_url=proxy + "/v1", timeout=5) as http:
            responses = {
                "stitched stream": http.post("/chat/completions", json={**chat, "stream": True}),
                "stitched JSON": http.post("/chat/completions", json=chat),
                "passthrough": http.get("/models"),
                "stitched, upstream error": http.post("/chat/completions", json=chat),
                "passthrough, upstream error": http.get("/models/nope"),
            }
    statuses = [response.status_code for response in responses.values()]
    assert statuses == [200, 200, 200, 429, 404]
    for what, response in responses.items():
        names = [name.lower() for name, _ in response.headers.raw]
        assert names.count(b"date") == 1, what
        assert names.count(b"server") <= 1, what
        assert response.headers.get("server") != "upstream/1.0", what


# -- uvicorn's internals, checked at config time -----------------------------------------


def test_the_installed_uvicorn_has_the_shape_the_protocol_expects():
    assert shape_problem() is None
    made = config(object(), "127.0.0.1", 0, max_header_bytes=1234)
    assert isinstance(made.http, type) and issubclass(made.http, HttpProtocol)
    assert made.http.max_head == 1234


def test_a_changed_method_or_attribute_is_noticed():
    class Renamed(HttpToolsProtocol):
        def data_received(self, chunk: bytes) -> None:  # type: ignore[override]
            pass

    class Bare:
        def __init__(self) -> None:
            self.transport = None

    assert shape_problem(methods=((Renamed, "data_received", ("self", "data")),)) == (
        "Renamed.data_received takes ('self', 'chunk'), not ('self', 'data')"
    )
    assert shape_problem(methods=((Bare, "on_message_begin", ("self",)),)) == (
        "Bare.on_message_begin is not a method"
    )
    assert shape_problem(attributes=((Bare, ("transport", "cycle")),)) == (
        "Bare no longer sets cycle"
    )


def test_a_changed_uvicorn_is_served_plainly_with_a_warning(monkeypatch, caplog):
    monkeypatch.setattr(server, "shape_problem", lambda: "HttpToolsProtocol.cycle is gone")
    made = config(object(), "127.0.0.1", 0)
    assert made.http == "httptools"
    [warning] = [r for r in caplog.records if r.name == "proxy"]
    assert warning.levelname == "WARNING"
    assert "HttpToolsProtocol.cycle is gone" in warning.getMessage()

    app = Starlette(routes=[Route("/", lambda request: Response(b"plain"))])
    with serve(app) as base:
        assert httpx.get(base + "/").content == b"plain"
