"""What a request must satisfy to be admitted (proxy.admission, proxy.server): a bounded head
(431) and body (413), and a path that stays under /v1 (400) — live, with raw sockets where
client libraries would tidy the request before sending it."""

from __future__ import annotations

import asyncio
import json
import select
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import openai
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from proxy import server
from proxy.admission import climbs
from proxy.app import create_app
from proxy.config import Settings
from tests.conftest import SERVER_TOOLS
from tests.servers import serve

COMPLETION = json.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "ok"},
                "finish_reason": "stop",
            }
        ],
    }
).encode()


class Recorder:
    """An upstream that records the raw path of every whole request it got, and answers
    `reply`."""

    def __init__(self, reply: bytes = b"{}") -> None:
        self.paths: list[bytes] = []
        self.reply = reply

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        message = {"more_body": True}
        while message.get("more_body"):
            message = await receive()
        if message["type"] == "http.disconnect":
            return  # a request cut short: not received
        self.paths.append(scope["raw_path"])
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": self.reply})


@contextmanager
def proxy_of(recorder: Recorder, **settings: Any) -> Iterator[tuple[str, int]]:
    """The proxy, live, in front of `recorder`, live too; yields the proxy's (host, port)."""
    with serve(recorder) as upstream:
        app = create_app(Settings(upstream=upstream + "/v1", **settings), SERVER_TOOLS)
        with serve(app) as url:
            host, port = url.removeprefix("http://").split(":")
            yield host, int(port)


def exchange(address: tuple[str, int], request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read one response to the end of the connection or of its body."""
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(request)
        return read_response(sock)


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers.get("content-length", 0)):
        body += sock.recv(65536)
    return int(lines[0].split()[1]), headers, body


def error_of(body: bytes) -> dict[str, Any]:
    error: dict[str, Any] = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("refused")]


# -- paths -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        b"/v1/../secret",
        b"/v1/./models",
        b"/v1/models/..",
        b"/v1/%2e%2e/secret",
        b"/v1/%2E%2e/secret",
        b"/v1/.%2E/secret",
        b"/v1/models/..%2F..%2Fsecret",
        b"/v1/models/..%2f..%2fsecret",
        b"/v1/models/..%5C..%5Csecret",
        b"/v1/models/..\\..\\secret",
        b"/v1/..;/secret",
        b"/v1/%252e%252e/secret",
        b"/v1/%252E./secret",
        b"/v1/models/..%252F..%252Fsecret",
        b"/v1/%25252e%25252e/secret",
        b"/v1/files/a%2541",  # encoded twice over: refused, whatever it hides
    ],
)
def test_paths_that_climb_are_refused(path):
    assert climbs(path)


@pytest.mark.parametrize(
    "path",
    [
        b"/v1/chat/completions",
        b"/v1/models/meta-llama%2FLlama-3.1-8B",  # how openai-python sends a name with a /
        b"/v1/files/report.v2.jsonl",
        b"/v1/files/a..b",
        b"/v1/files/...",
        b"/v1/files/100%25",
        b"/v1/files/%2e%2e%2e",
    ],
)
def test_other_paths_are_admitted(path):
    assert not climbs(path)


def test_a_path_out_of_v1_never_reaches_the_upstream():
    recorder = Recorder()
    with proxy_of(recorder, upstream_api_key="sk-upstream") as address:
        for path in (
            "/v1/../secret",
            "/v1/%2e%2e/secret",
            "/v1/models/..%2F..%2Fsecret",
            "/v1/%252e%252e/secret",
        ):
            status, _, body = exchange(address, f"GET {path} HTTP/1.1\r\nHost: p\r\n\r\n".encode())
            assert status == 400, path
            assert error_of(body)["code"] == "invalid_path"
        # the same proxy: a path under /v1 still goes through
        status, _, _ = exchange(address, b"GET /v1/models HTTP/1.1\r\nHost: p\r\n\r\n")
        assert status == 200
    assert recorder.paths == [b"/v1/models"]


# -- the body: 413 -----------------------------------------------------------------------


def test_a_body_over_the_limit_is_a_413_for_the_openai_client(caplog):
    recorder = Recorder(COMPLETION)
    with proxy_of(recorder, max_body_mb=0.01) as (host, port):  # 10 KiB
        client = openai.OpenAI(api_key="sk", base_url=f"http://{host}:{port}/v1", max_retries=0)
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "x" * 20_000}]
            )
        fits = client.with_raw_response.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x" * 5_000}]
        )
    assert caught.value.status_code == 413
    assert caught.value.body["code"] == "request_too_large"  # type: ignore[index]
    assert "10485 bytes" in caught.value.body["message"]  # type: ignore[index]
    assert fits.status_code == 200
    assert recorder.paths == [b"/v1/chat/completions"]  # only the request that fit
    [logged] = refusals(caplog)
    assert logged.startswith("refused a request from 127.0.0.1:")
    assert logged.endswith(": 413 request body too large")


def test_a_declared_60_mb_body_is_refused_before_it_is_read():
    recorder = Recorder()
    with proxy_of(recorder) as address:  # the default limit: 50 MiB
        head = (
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: p\r\n"
            b"Content-Type: application/json\r\nContent-Length: 62914560\r\n\r\n{"
        )
        status, _, body = exchange(address, head)  # the head and one byte: answered at once
    assert status == 413
    assert error_of(body)["code"] == "request_too_large"
    assert recorder.paths == []


async def test_a_chunked_body_is_counted_as_it_arrives_and_never_relayed_whole(caplog):
    recorder = Recorder()

    async def upload() -> AsyncIterator[bytes]:
        for _ in range(64):
            yield b"x" * 4096

    with proxy_of(recorder, max_body_mb=0.1) as (host, port):  # 100 KiB, of 256 sent
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as http:
            response = await http.post("/v1/files", content=upload())
            chat = await http.post("/v1/chat/completions", content=upload())
    for refused in (response, chat):
        assert refused.status_code == 413
        assert error_of(refused.content)["code"] == "request_too_large"
    assert recorder.paths == []  # the upstream never got a whole request
    assert len(refusals(caplog)) == 2


# -- the head: 431 -----------------------------------------------------------------------


def test_a_50_mb_header_is_answered_431_once_past_the_limit(caplog):
    """Answered while the header still arrives; what follows is discarded, not parsed."""
    recorder = Recorder()
    with proxy_of(recorder) as address, socket.create_connection(address, timeout=5) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: p\r\nX-Big: " + b"a" * 1024 * 1024)
        readable, _, _ = select.select([sock], [], [], 2)
        assert readable  # the answer came before the header ended
        piece = b"a" * 1024 * 1024
        for _ in range(49):
            sock.sendall(piece)
        status, headers, body = read_response(sock)
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(1) == b""  # the client is done: so is the proxy
    assert status == 431
    assert headers["connection"] == "close"
    assert headers["content-type"] == "application/json"
    assert error_of(body)["code"] == "request_header_fields_too_large"
    assert recorder.paths == []
    assert len(refusals(caplog)) == 1


def test_a_refused_connection_is_closed_after_lingering(monkeypatch):
    monkeypatch.setattr(server, "LINGER", 0.05)
    with proxy_of(Recorder()) as address, socket.create_connection(address, timeout=5) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nX-Big: " + b"a" * 100_000)
        status, _, _ = read_response(sock)
        assert sock.recv(1) == b""  # the client said nothing more, and kept it open
    assert status == 431


def test_a_response_under_way_is_not_broken_by_a_431(caplog):
    """A client that pipelines an oversized head behind a streaming response gets that
    response whole; the 431 is not written into it."""
    gate = threading.Event()

    async def slow(request: Request) -> Response:
        async def body() -> AsyncIterator[bytes]:
            yield b"early"
            await asyncio.to_thread(gate.wait, 5)
            yield b"late"

        return StreamingResponse(body())

    with serve(Starlette(routes=[Route("/slow", slow)])) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(b"GET /slow HTTP/1.1\r\n\r\n")
            data = sock.recv(65536)
            while b"early" not in data:
                data += sock.recv(65536)
            sock.sendall(b"GET /slow HTTP/1.1\r\nX-Big: " + b"a" * 100_000)
            while not refusals(caplog):
                gate.wait(0.01)
            gate.set()
            while not data.endswith(b"0\r\n\r\n"):
                data += sock.recv(65536)
    _, _, body = data.partition(b"\r\n\r\n")
    assert body == b"5\r\nearly\r\n4\r\nlate\r\n0\r\n\r\n"


def test_a_head_over_the_limit_that_arrived_whole_is_a_431(caplog):
    recorder = Recorder()
    with proxy_of(recorder, max_header_kb=2) as address:
        big = exchange(address, b"GET /v1/models HTTP/1.1\r\nX-A: " + b"a" * 3000 + b"\r\n\r\n")
        long_url = exchange(address, b"GET /v1/models?" + b"q" * 3000 + b" HTTP/1.1\r\n\r\n")
        fits = exchange(address, b"GET /v1/models HTTP/1.1\r\nX-A: " + b"a" * 1500 + b"\r\n\r\n")
    assert big[0] == long_url[0] == 431
    assert fits[0] == 200
    assert recorder.paths == [b"/v1/models"]
    logged = refusals(caplog)
    assert len(logged) == 2
    assert all("431 request line and headers too large" in line for line in logged)
    assert not any("aaaa" in line for line in logged)


def test_the_limit_of_the_protocol_is_the_setting(monkeypatch):
    """A head still arriving is cut at `max_header_bytes`, whatever its reads."""
    captured: list[type] = []
    real = server.config

    def config(*args: Any, **options: Any) -> Any:
        made = real(*args, max_header_bytes=4096, **options)
        captured.append(made.http)
        return made

    monkeypatch.setattr("tests.servers.config", config)
    recorder = Recorder()
    with serve(recorder) as upstream:
        app = create_app(Settings(upstream=upstream + "/v1"), SERVER_TOOLS)
        with serve(app) as url:
            host, port = url.removeprefix("http://").split(":")
            with socket.create_connection((host, int(port)), timeout=5) as sock:
                sock.sendall(b"GET /v1/models HTTP/1.1\r\nX-A: " + b"a" * 5000)  # no end
                status, _, _ = read_response(sock)
    assert status == 431
    assert captured[0].max_head == 4096  # type: ignore[attr-defined]


# -- plain uvicorn, when its internals changed -------------------------------------------


def test_with_plain_uvicorn_the_limits_still_hold(monkeypatch, caplog):
    monkeypatch.setattr(server, "shape_problem", lambda: "simulated change")
    recorder = Recorder()
    with proxy_of(recorder, max_header_kb=2, max_body_mb=0.01) as address:
        head = exchange(address, b"GET /v1/models HTTP/1.1\r\nX-A: " + b"a" * 3000 + b"\r\n\r\n")
        body = exchange(
            address,
            b"POST /v1/files HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"4000\r\n"
            + b"x" * 0x4000
            + b"\r\n0\r\n\r\n",
        )
        path = exchange(address, b"GET /v1/%2e%2e/secret HTTP/1.1\r\n\r\n")
    assert [head[0], body[0], path[0]] == [431, 413, 400]
    assert recorder.paths == []
    assert any("simulated change" in r.getMessage() for r in caplog.records)
