"""Every recorded chat stream replayed as the upstream, whole and torn at random byte offsets,
consumed by the real `openai` client through the proxy (DESIGN §2, §5)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.tools.registry import Registry
from tests.conftest import SERVER_TOOLS, mocked_app, openai_client
from tests.servers import loopback
from tests.tearing import CUTS, FRAMED, TORN, torn_body
from tests.upstream import FIXTURES, Reply, ScriptedUpstream, fixture, text_stream

TOOL_FIXTURES = [
    "chat/openai-gpt4o-tool-call.sse",
    "chat/openai-gpt4o-parallel-tool-calls.sse",
    "chat/groq-tool-call.sse",
    "chat/mistral-tool-call.sse",
    "chat/alibaba-tool-call.sse",
    "chat/deepseek-reasoner-tool-call.sse",
]
TEXT_FIXTURES = ["chat/openai-gpt4o-text.sse", "chat/azure-content-filter-text.sse"]


def test_every_chat_fixture_is_covered():
    on_disk = {f"chat/{p.name}" for p in (FIXTURES / "chat").glob("*.sse")}
    assert on_disk == set(TOOL_FIXTURES) | set(TEXT_FIXTURES)


@dataclass
class Recorded:
    """What a fixture says, read naively (the reference the proxy's output is checked against)."""

    first_id: str = ""
    content: str = ""
    reasoning: str = ""
    calls: list[dict[str, str]] = field(default_factory=list)
    usage: dict[str, Any] | None = None


def read_fixture(name: str) -> Recorded:
    rec = Recorded()
    by_key: dict[Any, dict[str, str]] = {}
    for line in fixture(name).decode().splitlines():
        if not line.startswith("data:") or line[5:].strip() == "[DONE]":
            continue
        chunk = json.loads(line[5:])
        rec.first_id = rec.first_id or chunk.get("id", "")
        rec.usage = chunk.get("usage") or rec.usage
        for choice in chunk["choices"]:
            delta = choice.get("delta", {})
            rec.content += delta.get("content") or ""
            rec.reasoning += delta.get("reasoning_content") or ""
            for tc in delta.get("tool_calls") or []:
                key = tc.get("index", tc.get("id"))
                if tc.get("id") and key not in by_key:
                    by_key[key] = {"id": tc["id"], "name": "", "arguments": ""}
                    rec.calls.append(by_key[key])
                call = by_key[key]
                call["name"] = call["name"] or tc.get("function", {}).get("name") or ""
                call["arguments"] += tc.get("function", {}).get("arguments") or ""
    return rec


async def chat(
    replies: list[Reply],
    registry: Registry = SERVER_TOOLS,
    **request: Any,
) -> tuple[list[Any], ScriptedUpstream]:
    """Stream one completion through the proxy; return the chunks and the upstream's record."""
    script = ScriptedUpstream(*replies)
    async with loopback(script) as served:
        app = mocked_app(registry, upstream=served.url)
        async with openai_client(app) as client:
            stream = await client.chat.completions.create(
                model="m",
                messages=[{"role": "user", "content": "What's the weather?"}],
                stream=True,
                **request,
            )
            chunks = [chunk async for chunk in stream]
    return chunks, script


def check_one_completion(chunks: list[Any], first_id: str, finish: str) -> None:
    """One id, one role delta, one finish_reason at the end."""
    assert {c.id for c in chunks} == {first_id}
    roles = [c for c in chunks if c.choices and c.choices[0].delta.role]
    assert len(roles) == 1
    assert roles[0] is next(c for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert [f for f in finishes if f] == [finish]
    assert finishes[-1] == finish


def client_tools_named(names: list[str]) -> list[dict[str, Any]]:
    return [
        {"type": "function", "function": {"name": n, "parameters": {"type": "object"}}}
        for n in names
    ]


SECOND = text_stream("It is sunny", "chatcmpl-second")


async def server_tool_round(name: str, first: list[bytes], second: list[bytes]) -> None:
    """The fixture's round, its calls run by the proxy, then a text round."""
    rec = read_fixture(name)
    chunks, script = await chat(
        [Reply(first), Reply(second)], stream_options={"include_usage": True}
    )
    choice_chunks = [c for c in chunks if c.choices]
    assert not any(c.choices[0].delta.tool_calls for c in choice_chunks)
    assert "".join(c.choices[0].delta.content or "" for c in choice_chunks) == rec.content + (
        "It is sunny"
    )
    reasoning = "".join(
        getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in choice_chunks
    )
    assert reasoning == rec.reasoning
    check_one_completion(chunks, rec.first_id, "stop")
    usage = [c.usage for c in chunks if c.usage]
    if rec.usage and "prompt_tokens" in rec.usage:
        assert len(usage) == 1 and not chunks[-1].choices
        assert usage[0].total_tokens == rec.usage["total_tokens"]
    # The second round carries the model's calls (every field) and the tools' results.
    assert len(script.requests) == 2
    history = script.requests[1]["messages"][1:]
    assistant, results = history[0], history[1:]
    assert assistant["role"] == "assistant"
    if rec.reasoning:
        assert assistant["reasoning_content"] == rec.reasoning
    sent = [
        (c["id"], c["function"]["name"], json.loads(c["function"]["arguments"]))
        for c in assistant["tool_calls"]
    ]
    assert sent == [(c["id"], c["name"], json.loads(c["arguments"])) for c in rec.calls]
    assert [r["tool_call_id"] for r in results] == [c["id"] for c in rec.calls]
    for result, call in zip(results, rec.calls, strict=True):
        output = SERVER_TOOLS[call["name"]].tool(**json.loads(call["arguments"]))
        expected = output if isinstance(output, str) else json.dumps(output)
        assert (result["role"], result["content"]) == ("tool", expected)


async def client_tool_round(name: str, pieces: list[bytes]) -> None:
    rec = read_fixture(name)
    names = sorted({c["name"] for c in rec.calls})
    chunks, script = await chat([Reply(pieces)], tools=client_tools_named(names))
    assert len(script.requests) == 1
    seen: dict[int, dict[str, str]] = {}
    for c in chunks:
        for tc in (c.choices[0].delta.tool_calls or []) if c.choices else []:
            call = seen.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += tc.id or ""
            call["name"] += (tc.function.name or "") if tc.function else ""
            call["arguments"] += (tc.function.arguments or "") if tc.function else ""
    assert sorted(seen) == list(range(len(rec.calls)))
    assert [seen[i] for i in sorted(seen)] == rec.calls
    check_one_completion(chunks, rec.first_id, "tool_calls")


@pytest.mark.parametrize("name", TOOL_FIXTURES)
async def test_server_tool_calls_are_hidden_and_run(name):
    await server_tool_round(name, [fixture(name)], [SECOND])


@pytest.mark.parametrize("name", TOOL_FIXTURES)
async def test_client_tool_calls_pass_through(name):
    await client_tool_round(name, [fixture(name)])


@pytest.mark.parametrize("name", TEXT_FIXTURES)
async def test_text_streams_pass_through(name):
    rec = read_fixture(name)
    chunks, _ = await chat([Reply(fixture(name))])
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == rec.content
    check_one_completion([c for c in chunks if c.id], rec.first_id, "stop")


@TORN
@CUTS
@FRAMED
@given(name=st.sampled_from(TOOL_FIXTURES), data=st.data())
def test_torn_server_tool_streams(framing, inside_frame_ends, name, data):
    """Both rounds torn, at least once each, in the same framing."""
    first = torn_body(data, fixture(name), framing, inside_frame_ends)
    second = torn_body(data, SECOND, framing, inside_frame_ends)
    asyncio.run(server_tool_round(name, first, second))


@TORN
@CUTS
@FRAMED
@given(name=st.sampled_from(TOOL_FIXTURES), data=st.data())
def test_torn_client_tool_streams(framing, inside_frame_ends, name, data):
    pieces = torn_body(data, fixture(name), framing, inside_frame_ends)
    asyncio.run(client_tool_round(name, pieces))


@TORN
@CUTS
@FRAMED
@given(name=st.sampled_from(TEXT_FIXTURES), data=st.data())
def test_torn_text_streams(framing, inside_frame_ends, name, data):
    pieces = torn_body(data, fixture(name), framing, inside_frame_ends)
    chunks, _ = asyncio.run(chat([Reply(pieces)]))
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == read_fixture(name).content
