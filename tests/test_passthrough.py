"""Every other `/v1` path is relayed byte for byte (DESIGN §4): in process, and its path live."""

from __future__ import annotations

import gzip

import httpx2
import openai

from tests.conftest import mocked_app, raw_client
from tests.test_admission import Recorder, exchange, proxy_of
from tests.upstream import Reply


async def test_headers_and_bytes_come_back_exactly(upstream):
    name = "报告.jsonl".encode()
    body = b"\x00\x01binary\xff"
    headers = {
        "content-disposition": 'attachment; filename="' + name.decode("latin-1") + '"',
        "x-weird": "caf\xe9",
    }
    up = upstream(Reply(body, content_type="application/octet-stream", headers=headers))
    async with raw_client() as http:
        response = await http.get("/v1/files/f1/content")
    assert up.paths == ["GET /v1/files/f1/content?"]
    assert response.content == body
    raw = dict(response.headers.raw)
    assert raw[b"content-disposition"] == b'attachment; filename="' + name + b'"'
    assert raw[b"x-weird"] == b"caf\xe9"


async def test_compressed_bodies_pass_untouched(upstream):
    packed = gzip.compress(b'{"data": []}')
    up = upstream(
        Reply(packed, content_type="application/json", headers={"content-encoding": "gzip"})
    )
    async with (
        raw_client() as http,
        http.stream("GET", "/v1/models", headers={"accept-encoding": "gzip"}) as response,
    ):
        raw = b"".join([part async for part in response.aiter_raw()])
    assert raw == packed
    assert up.headers[0]["accept-encoding"] == "gzip"


async def test_error_statuses_and_methods_pass_through(upstream):
    error = b'{"error": {"message": "No such File"}}'
    up = upstream(Reply(error, status=404, content_type="application/json"))
    async with raw_client() as http:
        response = await http.delete("/v1/files/nope")
    assert up.paths == ["DELETE /v1/files/nope?"]
    assert response.status_code == 404
    assert response.json() == {"error": {"message": "No such File"}}


async def test_paths_outside_v1_are_openai_style_404s():
    async with raw_client() as http:
        response = await http.get("/nothing/here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_an_unexpected_failure_is_a_500_in_the_openai_format(monkeypatch):
    from proxy.chat import conversation

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(conversation.ChatConversation, "__init__", broken)
    app = mocked_app()
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app, raise_app_exceptions=False),
        base_url="http://proxy",
    ) as http:
        response = await http.post("/v1/chat/completions", json={"model": "m", "messages": []})
    assert response.status_code == 500
    assert response.json()["error"] == {
        "message": "the proxy failed: RuntimeError: boom",
        "type": "server_error",
        "param": None,
        "code": "proxy_error",
    }


def test_the_path_goes_upstream_exactly_as_sent():
    """Not as uvicorn decoded it: an encoded `/` stays inside its segment, as openai-python
    sends a model name with a `/`, and bytes the URL needs escaped arrive escaped."""
    recorder = Recorder()
    with proxy_of(recorder) as address:
        for path in (b"/v1/models/meta-llama%2FLlama-3.1-8B", b"/v1/files/a%20b%25/c.jsonl"):
            assert exchange(address, b"GET " + path + b" HTTP/1.1\r\n\r\n")[0] == 200
        host, port = address
        client = openai.OpenAI(api_key="sk", base_url=f"http://{host}:{port}/v1", max_retries=0)
        client.models.retrieve("org/model")
    assert recorder.paths == [
        b"/v1/models/meta-llama%2FLlama-3.1-8B",
        b"/v1/files/a%20b%25/c.jsonl",
        b"/v1/models/org%2Fmodel",
    ]
