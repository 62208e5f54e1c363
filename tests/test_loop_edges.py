"""Paths of the round loop that real upstreams and real failures take rarely, in both
dialects, through the real `openai` client in process: a compressed body despite `identity`,
the connection failing mid-body, the proxy itself failing mid-stream, events it cannot read,
a shown call that fails, and legacy `functions` without streaming."""

from __future__ import annotations

import gzip
import json
from typing import Any

import httpx
import openai
import pytest

from proxy import tool
from proxy.chat.stream import ChatStream
from proxy.responses.calls import Showing
from proxy.responses.stream import ResponsesStream
from proxy.tools.registry import Registry
from tests.chunks import calls_round, completion
from tests.conftest import mocked_app, openai_client, raw_client
from tests.events import call_events, message_events, stream_round
from tests.upstream import Reply, text_stream

USER = [{"role": "user", "content": "hi"}]


async def chat_text(client: openai.AsyncOpenAI) -> str:
    stream = await client.chat.completions.create(model="m", messages=USER, stream=True)
    return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])


async def test_an_upstream_that_compresses_anyway_is_read_decompressed(upstream, client):
    body = text_stream("squeezed but whole")
    up = upstream(Reply(gzip.compress(body), headers={"content-encoding": "gzip"}))
    assert await chat_text(client) == "squeezed but whole"
    assert up.headers[0]["accept-encoding"] == "identity"


async def test_a_compressed_body_is_not_labelled_compressed_to_the_client(upstream):
    body = text_stream("plain again")
    upstream(Reply(gzip.compress(body), headers={"content-encoding": "gzip"}))
    async with raw_client() as http:
        request = {"model": "m", "messages": USER, "stream": True}
        response = await http.post("/v1/chat/completions", json=request)
    assert "content-encoding" not in response.headers
    assert b"plain again" not in response.content  # one word a chunk
    assert b'"content":" again"' in response.content or b'"content": " again"' in response.content


async def test_a_connection_failing_mid_body_ends_the_stream_with_the_error(upstream, client):
    role, one = text_stream("one two", "chatcmpl-1").split(b"\n\n")[:2]
    upstream(Reply([role + b"\n\n" + one + b"\n\n", httpx.ReadError("reset by peer")]))
    stream = await client.chat.completions.create(model="m", messages=USER, stream=True)
    seen = []
    with pytest.raises(openai.APIError, match="the upstream connection failed mid-response"):
        async for piece in stream:
            seen.append(piece)
    assert "".join(c.choices[0].delta.content or "" for c in seen if c.choices) == "one"


def fail_on_read(monkeypatch: pytest.MonkeyPatch, cls: type, number: int) -> None:
    """Make `cls.feed` (the stitcher) raise on its `number`th read: the proxy's own bug."""
    feed = cls.feed
    reads = 0

    def failing(self: Any, data: bytes) -> bytes:
        nonlocal reads
        reads += 1
        if reads == number:
            raise RuntimeError("stitcher bug")
        return feed(self, data)  # type: ignore[no-any-return]

    monkeypatch.setattr(cls, "feed", failing)


async def test_the_proxy_failing_mid_chat_stream_ends_it_with_the_error_event(
    upstream, client, monkeypatch
):
    frames = [frame + b"\n\n" for frame in text_stream("one two three").split(b"\n\n") if frame]
    upstream(Reply(frames))
    fail_on_read(monkeypatch, ChatStream, 3)
    stream = await client.chat.completions.create(model="m", messages=USER, stream=True)
    seen = []
    with pytest.raises(openai.APIError) as caught:
        async for piece in stream:
            seen.append(piece)
    assert "the proxy failed: RuntimeError: stitcher bug" in caught.value.message
    assert "".join(c.choices[0].delta.content or "" for c in seen if c.choices) == "one"


async def test_the_proxy_failing_mid_responses_stream_ends_it_with_response_failed(
    upstream, monkeypatch
):
    body = stream_round("resp_1", message_events(0, "Hello there")).body
    frames = [frame + b"\n\n" for frame in body.split(b"\n\n") if frame]
    upstream(Reply(frames))
    fail_on_read(monkeypatch, ResponsesStream, 5)
    client = openai_client(mocked_app())
    async with client.responses.stream(model="m", input="hi") as stream:
        events = [event async for event in stream]
    failed = events[-1]
    assert failed.type == "response.failed"
    assert failed.response.error.code == "proxy_error"
    assert "stitcher bug" in failed.response.error.message
    numbers = [e.sequence_number for e in events]
    assert numbers == list(range(len(events)))


async def test_chat_frames_that_are_not_json_pass_through(upstream):
    frames = text_stream("a b").split(b"\n\n")
    body = frames[0] + b"\n\ndata: not json at all\n\n" + b"\n\n".join(frames[1:])
    upstream(Reply(body))
    async with raw_client() as http:
        request = {"model": "m", "messages": USER, "stream": True}
        response = await http.post("/v1/chat/completions", json=request)
    assert b"data: not json at all\n\n" in response.content
    assert b"data: [DONE]" in response.content


async def test_responses_events_without_a_type_or_json_pass_through(upstream):
    body = stream_round("resp_1", message_events(0, "Hi")).body
    cut = body.index(b"event: response.output_item.added")
    odd = b'data: {"note": "no type"}\n\nevent: custom\ndata: <not json>\n\n'
    upstream(Reply(body[:cut] + odd + body[cut:]))
    async with raw_client() as http:
        response = await http.post(
            "/v1/responses", json={"model": "m", "input": "hi", "stream": True}
        )
    assert b'data: {"note": "no type"}\n\n' in response.content
    assert b"data: <not json>\n\n" in response.content
    assert b"response.completed" in response.content


@tool
def broken(x: int) -> str:
    """Always fails."""
    raise ValueError(f"cannot handle {x}")


async def test_a_shown_call_that_fails_is_a_failed_mcp_call(upstream):
    upstream(
        stream_round("resp_1", call_events(0, "call_b", "broken", '{"x": 7}')),
        stream_round("resp_2", message_events(0, "It failed.")),
    )
    client = openai_client(mocked_app(Registry.of(broken), show_calls=True))
    async with client.responses.stream(model="m", input="hi") as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_response()
    assert "response.mcp_call.failed" in kinds and "response.mcp_call.completed" not in kinds
    mcp = final.output[0]
    assert (mcp.type, mcp.status) == ("mcp_call", "failed")
    assert "ValueError: cannot handle 7" in mcp.error.to_dict()["content"][0]["text"]
    assert final.output_text == "It failed."


async def test_legacy_functions_without_streaming(upstream, client):
    up = upstream(
        completion(
            {
                "role": "assistant",
                "content": None,
                "function_call": {"name": "weather", "arguments": '{"location": "Rome"}'},
            },
            finish="function_call",
        ),
        completion({"role": "assistant", "content": "Warm in Rome"}, id="chatcmpl-2"),
    )
    lookup = {"name": "lookup", "parameters": {"type": "object", "properties": {}}}
    answer = await client.chat.completions.create(model="m", messages=USER, functions=[lookup])
    message = answer.choices[0].message
    assert (message.content, message.function_call) == ("Warm in Rome", None)
    assert answer.choices[0].finish_reason == "stop"
    assert up.requests[1]["messages"][-1]["role"] == "function"
    assert up.requests[1]["messages"][-1]["name"] == "weather"
    assert up.requests[1]["messages"][-2]["function_call"]["name"] == "weather"


async def test_a_later_round_failing_with_a_non_json_body(upstream, client):
    upstream(
        calls_round(("c1", "weather", '{"location": "Oslo"}')),
        Reply(b"upstream exploded", status=500, content_type="text/plain"),
    )
    stream = await client.chat.completions.create(model="m", messages=USER, stream=True)
    with pytest.raises(openai.APIError, match="the upstream API answered 500: upstream exploded"):
        async for _ in stream:
            pass


def test_items_without_an_index_are_numbered_by_every_item_added() -> None:
    """llama.cpp sends no `output_index`: an item without an id still takes its place, so
    the next one is not numbered over it."""
    stream = ResponsesStream(Showing(frozenset()))
    events = [
        {"type": "response.created", "response": {"id": "resp_1", "output": []}},
        {"type": "response.output_item.added", "item": {"type": "reasoning", "summary": []}},
        {"type": "response.output_item.added", "item": {"id": "m1", "type": "message"}},
    ]
    stream.feed(b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events))
    assert stream.by_id == {"m1": 1}
