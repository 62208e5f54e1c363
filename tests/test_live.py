"""Real parts, really started: the proxy under uvicorn on loopback, a real HTTP upstream on
loopback, and the real `openai` client — including an unmodified app pointed at the proxy
with `OPENAI_BASE_URL` while the proxy runs as `openai-tool-proxy serve` (tests/test_readme.py,
with the README's own app)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import httpx
import openai
import pytest

from proxy.app import create_app
from proxy.config import Settings
from tests.chunks import calls_round, text_round
from tests.conftest import SERVER_TOOLS
from tests.servers import free_port, serve, upstream_app
from tests.upstream import Reply, ScriptedUpstream, fixture, text_stream


def framed(body: bytes) -> list[bytes]:
    """A body as the network would carry it, one SSE frame per write."""
    return [frame + b"\n\n" for frame in body.split(b"\n\n") if frame]


def first_word_then_rest(body: bytes) -> list[bytes]:
    """A text stream in two writes: up to its first word of content, then the rest."""
    frames = framed(body)
    return [b"".join(frames[:2]), b"".join(frames[2:])]


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def proxy_for(script: ScriptedUpstream, gate: threading.Event | None = None, **settings):
    """Start the upstream and the proxy; yield an `openai.OpenAI` client of the proxy."""
    with serve(upstream_app(script, gate)) as upstream_url:
        app = create_app(Settings(upstream=upstream_url + "/v1", **settings), SERVER_TOOLS)
        with serve(app) as proxy_url:
            yield openai.OpenAI(api_key="sk-test", base_url=proxy_url + "/v1", max_retries=0)


def test_content_streams_chunk_by_chunk(gate):
    script = ScriptedUpstream(Reply(framed(text_stream("one two three four"))))
    for client in proxy_for(script, gate):
        stream = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "count"}], stream=True
        )
        chunks = iter(stream)
        first = next(chunks)
        assert first.choices[0].delta.role == "assistant"
        gate.set()  # the first chunk came while the upstream held the rest back
        rest = list(chunks)
        assert "".join(c.choices[0].delta.content or "" for c in rest) == "one two three four"
    assert script.stalled == 0


def test_the_round_after_a_server_tool_streams_too(gate):
    script = ScriptedUpstream(
        calls_round(("c1", "weather", '{"location": "Lima"}')),
        Reply(first_word_then_rest(text_stream("Warm in Lima", "chatcmpl-2"))),
    )
    for client in proxy_for(script, gate):
        stream = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "weather"}], stream=True
        )
        seen = []
        for chunk in stream:
            seen.append(chunk)
            if chunk.choices and chunk.choices[0].delta.content:
                break
        gate.set()  # round 2's first word came while its upstream held the rest back
        seen.extend(stream)
        text = "".join(c.choices[0].delta.content or "" for c in seen if c.choices)
        assert text == "Warm in Lima"
        assert {c.id for c in seen} == {"chatcmpl-1"}
    assert script.requests[1]["messages"][-1]["content"] == "Sunny, 21°C in Lima"
    assert script.stalled == 0


def test_stream_helper_over_real_sockets():
    script = ScriptedUpstream(
        Reply(fixture("chat/deepseek-reasoner-tool-call.sse")),
        text_round("Sunny in San Francisco"),
    )
    for client in proxy_for(script):
        with client.chat.completions.stream(
            model="m", messages=[{"role": "user", "content": "weather"}]
        ) as stream:
            final = stream.get_final_completion()
        assert final.choices[0].message.content == "Sunny in San Francisco"
        assert not final.choices[0].message.tool_calls


def test_other_endpoints_pass_through_byte_for_byte():
    models = b'{"object":"list","data":[{"id":"m","object":"model"}]}'
    missing = b'{"error":{"message":"no such model","type":"invalid_request_error"}}'
    script = ScriptedUpstream(
        Reply(models, content_type="application/json", headers={"x-request-id": "r1"}),
        Reply(missing, status=404, content_type="application/json"),
        Reply(b'{"ok":true}', content_type="application/json"),
    )
    for client in proxy_for(script):
        base = str(client.base_url).rstrip("/")
        with httpx.Client() as http:
            listed = http.get(base + "/models?limit=2", headers={"authorization": "Bearer sk-x"})
            gone = http.get(base + "/models/nope")
            upload = http.post(
                base + "/files", files={"file": ("a.jsonl", b"{}\n" * 1000)}, data={"purpose": "x"}
            )
        assert (listed.status_code, listed.content) == (200, models)
        assert listed.headers["x-request-id"] == "r1"
        assert (gone.status_code, gone.content) == (404, missing)
        assert upload.status_code == 200
    assert script.paths[:2] == ["GET /v1/models?limit=2", "GET /v1/models/nope?"]
    assert script.headers[0]["authorization"] == "Bearer sk-x"
    assert b"{}\n" * 1000 in script.requests[2]["raw"]


def test_an_unreachable_upstream_is_a_502_in_the_openai_format():
    app = create_app(Settings(upstream=f"http://127.0.0.1:{free_port()}/v1"), SERVER_TOOLS)
    with serve(app) as proxy_url:
        client = openai.OpenAI(api_key="sk", base_url=proxy_url + "/v1", max_retries=0)
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert caught.value.status_code == 502
    assert caught.value.body["code"] == "upstream_unreachable"


def test_health_lists_the_tools():
    app = create_app(Settings(upstream="http://127.0.0.1:9/v1"), SERVER_TOOLS)
    with serve(app) as url:
        body = httpx.get(url + "/health").json()
    assert body == {"status": "ok", "tools": sorted(SERVER_TOOLS)}
    assert json.dumps(body)


def test_responses_over_real_sockets(gate):
    from tests.events import call_events, message_events, stream_round

    script = ScriptedUpstream(
        stream_round("resp_1", call_events(0, "call_1", "weather", '{"location": "Quito"}')),
        stream_round("resp_2", message_events(0, "Mild in Quito")),
    )
    body = script.replies[1].body
    cut = body.index(b"\n\n", body.index(b"response.output_text.delta")) + 2
    script.replies[1] = Reply([body[:cut], body[cut:]])  # the upstream pauses after a word
    for client in proxy_for(script, gate):
        with client.responses.stream(model="m", input="weather in Quito?") as stream:
            for event in stream:
                if event.type == "response.output_text.delta" and not gate.is_set():
                    gate.set()  # round 2's first word came while its upstream held the rest
                    first_word = event.delta
            final = stream.get_final_response()
        assert (final.id, final.output_text, first_word) == ("resp_1", "Mild in Quito", "Mild")
    assert script.requests[1]["input"][-1]["output"] == "Sunny, 21°C in Quito"
    assert script.stalled == 0


def test_a_client_that_leaves_stops_the_upstream_stream():
    """The relay notices the disconnect and closes the upstream response at once."""
    closed = threading.Event()

    async def endless(scope, receive, send):
        if scope["type"] != "http":
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        try:
            await send(
                {
                    "type": "http.response.body",
                    "more_body": True,
                    "body": text_stream("first", "chatcmpl-1").split(b"\n\n")[0] + b"\n\n",
                }
            )
            while True:  # the model goes on and on, until the proxy hangs up
                message = await receive()
                if message["type"] == "http.disconnect":
                    closed.set()
                    return
        finally:
            closed.set()

    with serve(endless) as upstream_url:
        app = create_app(Settings(upstream=upstream_url + "/v1"), SERVER_TOOLS)
        with serve(app) as proxy_url, httpx.Client() as http:
            request = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]}
            with http.stream("POST", proxy_url + "/v1/chat/completions", json=request) as response:
                first = next(response.iter_raw())
                assert b"assistant" in first
            assert closed.wait(5), "the upstream stream was left open"
