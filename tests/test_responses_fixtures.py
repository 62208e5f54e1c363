"""Every recorded Responses stream replayed as the upstream, whole and torn at random byte
offsets, consumed by the real `openai` client through the proxy (DESIGN §3, §5)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy import tool
from proxy.tools.registry import Registry
from tests.conftest import SERVER_TOOLS, mocked_app, openai_client
from tests.events import message_events, response, stream_round, usage
from tests.servers import loopback
from tests.tearing import CUTS, FRAMED, TORN, by_frame, torn, torn_body
from tests.upstream import FIXTURES, Reply, ScriptedUpstream, fixture

FIXTURE_NAMES = sorted(f"responses/{p.name}" for p in (FIXTURES / "responses").glob("*.sse"))


@tool
def calculate(expression: str) -> str:
    """Multiply two integers written `a*b` (all the llama.cpp recording asks for)."""
    a, b = expression.split("*")
    return str(int(a) * int(b))


REGISTRY = Registry(SERVER_TOOLS.values())
REGISTRY.add(calculate, "tests")


def upstream_events(name: str) -> list[dict[str, Any]]:
    events = []
    for frame in fixture(name).decode().split("\n\n"):
        data = [line[5:].strip() for line in frame.splitlines() if line.startswith("data:")]
        if data:
            events.append(json.loads("\n".join(data)))
    return events


def recorded_calls(name: str) -> list[dict[str, Any]]:
    """The function calls a fixture's terminal response lists."""
    output = upstream_events(name)[-1]["response"]["output"]
    return [item for item in output if item["type"] == "function_call"]


def client_tools(name: str) -> list[dict[str, Any]]:
    """Function tools of the client's own, named as the fixture's calls: the client's win."""
    return [
        {"type": "function", "name": call["name"], "parameters": {"type": "object"}}
        for call in recorded_calls(name)
    ]


def result_of(call: dict[str, Any]) -> str:
    return str(REGISTRY[call["name"]].tool(**json.loads(call["arguments"])))


async def run(
    replies: list[Reply], show_calls: bool = False, **request: Any
) -> tuple[list[Any], Any, ScriptedUpstream, Exception | None]:
    """Stream through the proxy with `client.responses.stream`; return the events, the final
    response (or None), the upstream's record and any error the SDK raised."""
    script = ScriptedUpstream(*replies)
    events: list[Any] = []
    final = None
    error: Exception | None = None
    async with loopback(script) as served:
        app = mocked_app(REGISTRY, show_calls=show_calls, upstream=served.url)
        async with openai_client(app) as client:
            try:
                async with client.responses.stream(
                    model="m", input="What's the weather in San Francisco?", **request
                ) as stream:
                    async for event in stream:
                        events.append(event)
                    final = await stream.get_final_response()
            except (openai.APIError, RuntimeError) as exc:
                error = exc
    return events, final, script, error


def plain(item: Any) -> tuple[Any, ...]:
    """What identifies an output item, whether parsed by the SDK or as recorded."""
    get = item.get if isinstance(item, dict) else lambda key: getattr(item, key, None)
    return (get("id"), get("type"), get("status"), get("arguments"), get("call_id"))


def check_one_response(events: list[Any]) -> None:
    """One created, one terminal, sequence numbers from 0, output indices without gaps."""
    kinds = [e.type for e in events]
    assert kinds.count("response.created") == 1 and kinds[0] == "response.created"
    terminals = [
        k for k in kinds if k in ("response.completed", "response.failed", "response.incomplete")
    ]
    assert len(terminals) == 1 and kinds[-1] == terminals[0]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    added = [e for e in events if e.type == "response.output_item.added"]
    assert [e.output_index for e in added] == list(range(len(added)))
    index_of = {e.item.id: e.output_index for e in added}
    for event in events:  # every event about an item carries the index it was added at
        if getattr(event, "item_id", None) is not None:
            assert event.output_index == index_of[event.item_id], event
    ids = {e.response.id for e in events if hasattr(e, "response")}
    assert len(ids) == 1


def test_every_responses_fixture_is_covered():
    assert set(FIXTURE_NAMES) == {
        "responses/azure-function-call.sse",
        "responses/lmstudio-function-call.sse",
        "responses/openai-web-search-hosted.sse",
        "responses/openai-error.sse",
        "responses/llamacpp-function-call.sse",
    }


CALL_FIXTURES = [
    "responses/azure-function-call.sse",
    "responses/lmstudio-function-call.sse",
    "responses/llamacpp-function-call.sse",
]
ANSWER = message_events(0, "Sunny in San Francisco", "msg_2")


def follow_up(name: str) -> bytes:
    """The next round's text answer, numbered as the fixture's upstream numbers its events
    (llama.cpp: not at all)."""
    numbered = b'"sequence_number"' in fixture(name)
    return stream_round("resp_second", ANSWER, numbered=numbered).pieces[0]


async def server_call_round(name: str, first: list[bytes], second: list[bytes]) -> None:
    """The fixture's round, its call run by the proxy, then a text round."""
    upstream = upstream_events(name)
    first_id = upstream[0]["response"]["id"]
    events, final, script, error = await run([Reply(first), Reply(second)])
    assert error is None
    check_one_response(events)
    assert final.id == first_id
    assert final.output_text.endswith("Sunny in San Francisco")
    assert not any("function_call" in e.type for e in events)
    # The terminal event lists the visible items: every recorded one but the calls, then
    # the answer.
    recorded = upstream[-1]["response"]["output"]
    visible = [i for i in recorded if i["type"] != "function_call"] + [ANSWER[1]]
    assert [plain(item) for item in final.output] == [plain(item) for item in visible]
    # The next round replays the input, every item of the first round, and the result.
    sent = script.requests[1]["input"]
    assert sent[0] == {"role": "user", "content": "What's the weather in San Francisco?"}
    assert sent[1:-1] == recorded
    call = recorded[-1]
    assert sent[-1] == {
        "type": "function_call_output",
        "call_id": call["call_id"],
        "output": result_of(call),
    }
    # Usage is summed: the second round reported none.
    assert final.usage.total_tokens == upstream[-1]["response"]["usage"]["total_tokens"]


async def client_call_round(name: str, pieces: list[bytes]) -> None:
    upstream = upstream_events(name)
    events, final, script, error = await run([Reply(pieces)], tools=client_tools(name))
    assert error is None
    check_one_response(events)
    assert len(script.requests) == 1
    recorded = upstream[-1]["response"]["output"]
    assert [plain(item) for item in final.output] == [plain(item) for item in recorded]
    kinds = [e.type for e in events]
    assert kinds.count("response.output_item.added") == len(recorded)


@pytest.mark.parametrize("name", CALL_FIXTURES)
async def test_server_calls_are_hidden_and_run(name):
    """The text round read one event at a time, as upstreams write them: after a first
    round with only the call (Azure), its deltas take the fast path (tests/
    test_responses_stream.py); after one with visible items, they are renumbered."""
    await server_call_round(name, [fixture(name)], by_frame(follow_up(name)))


@pytest.mark.parametrize("name", CALL_FIXTURES)
async def test_client_calls_pass_through(name):
    await client_call_round(name, [fixture(name)])


@pytest.mark.parametrize("name", CALL_FIXTURES)
async def test_server_calls_shown_as_mcp_items(name):
    replies = [Reply(fixture(name)), Reply(by_frame(follow_up(name)))]
    events, final, _, error = await run(replies, show_calls=True)
    assert error is None
    check_one_response(events)
    call = recorded_calls(name)[-1]
    shown = [item for item in final.output if item.type == "mcp_call"]
    assert [(i.name, i.arguments, i.status, i.output) for i in shown] == [
        (call["name"], call["arguments"], "completed", result_of(call))
    ]
    kinds = [e.type for e in events]
    assert kinds.count("response.mcp_call_arguments.done") == 1
    assert kinds.count("response.mcp_call.completed") == 1


async def hosted_tools_round(pieces: list[bytes]) -> None:
    name = "responses/openai-web-search-hosted.sse"
    upstream = upstream_events(name)
    events, final, script, error = await run([Reply(pieces)])
    assert error is None
    check_one_response(events)
    assert len(script.requests) == 1
    assert [plain(i) for i in final.output] == [
        plain(i) for i in upstream[-1]["response"]["output"]
    ]
    # Every event passes, in order, with the upstream's own numbering.
    assert [e.type for e in events] == [e["type"] for e in upstream]


async def test_hosted_tool_items_pass_through_untouched():
    await hosted_tools_round([fixture("responses/openai-web-search-hosted.sse")])


async def error_round(pieces: list[bytes]) -> None:
    events, final, script, error = await run([Reply(pieces)])
    assert isinstance(error, openai.APIError)
    assert "exceeded your current quota" in str(error)
    assert final is None and len(script.requests) == 1
    assert [e.type for e in events] == ["response.created", "response.in_progress"]


async def test_an_upstream_error_event_reaches_the_client_and_ends_the_stream():
    await error_round([fixture("responses/openai-error.sse")])


@TORN
@CUTS
@FRAMED
@given(name=st.sampled_from(CALL_FIXTURES), data=st.data())
def test_torn_server_call_streams(framing, inside_frame_ends, name, data):
    """Both rounds torn, at least once each, in the same framing."""
    first = torn_body(data, fixture(name), framing, inside_frame_ends)
    second = torn_body(data, follow_up(name), framing, inside_frame_ends)
    asyncio.run(server_call_round(name, first, second))


@TORN
@CUTS
@FRAMED
@given(name=st.sampled_from(CALL_FIXTURES), data=st.data())
def test_torn_client_call_streams(framing, inside_frame_ends, name, data):
    asyncio.run(client_call_round(name, torn_body(data, fixture(name), framing, inside_frame_ends)))


@TORN
@CUTS
@FRAMED
@given(data=st.data())
def test_torn_hosted_and_error_streams(framing, inside_frame_ends, data):
    hosted = fixture("responses/openai-web-search-hosted.sse")
    asyncio.run(hosted_tools_round(torn_body(data, hosted, framing, inside_frame_ends)))
    error = fixture("responses/openai-error.sse")
    asyncio.run(error_round(torn_body(data, error, framing, inside_frame_ends)))


async def non_streamed_round(name: str, pieces: list[bytes], client_owns: bool) -> None:
    """The fixture's recorded final response served as a non-streamed body (then, when the
    proxy runs the call, a text answer)."""
    first = upstream_events(name)[-1]["response"]
    second = response("resp_second", [ANSWER[1]], usage=usage(5, 2))
    script = ScriptedUpstream(
        Reply(pieces, content_type="application/json"),
        Reply(json.dumps(second).encode(), content_type="application/json"),
    )
    async with (
        loopback(script) as served,
        openai_client(mocked_app(REGISTRY, upstream=served.url)) as client,
    ):
        tools = client_tools(name) if client_owns else []
        result = await client.responses.create(model="m", input="weather?", tools=tools)
    assert result.id == first["id"]
    calls = recorded_calls(name)
    if client_owns or not calls:
        assert len(script.requests) == 1
        assert [plain(i) for i in result.output] == [plain(i) for i in first["output"]]
        return
    visible = [i for i in first["output"] if i["type"] != "function_call"] + [ANSWER[1]]
    assert [plain(i) for i in result.output] == [plain(i) for i in visible]
    assert result.usage.total_tokens == first["usage"]["total_tokens"] + 7
    assert script.requests[1]["input"][-1] == {
        "type": "function_call_output",
        "call_id": calls[-1]["call_id"],
        "output": result_of(calls[-1]),
    }


NON_STREAMED = [*CALL_FIXTURES, "responses/openai-web-search-hosted.sse"]


def body_of(name: str) -> bytes:
    return json.dumps(upstream_events(name)[-1]["response"]).encode()


@pytest.mark.parametrize("name", NON_STREAMED)
@pytest.mark.parametrize("client_owns", [False, True])
async def test_non_streamed_fixture_rounds(name, client_owns):
    await non_streamed_round(name, [body_of(name)], client_owns)


@settings(max_examples=12, deadline=None)
@given(name=st.sampled_from(NON_STREAMED), client_owns=st.booleans(), data=st.data())
def test_torn_non_streamed_bodies(name, client_owns, data):
    pieces = data.draw(torn(body_of(name), inside_frame_ends=False))
    asyncio.run(non_streamed_round(name, pieces, client_owns))
