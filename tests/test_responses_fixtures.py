"""Every recorded Responses stream replayed as the upstream, whole and torn at random byte
offsets, consumed by the real `openai` client through the proxy (DESIGN §3, §5)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import openai
import pytest
import respx
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import UPSTREAM, mocked_app, openai_client, weather
from tests.events import message_events, stream_round
from tests.upstream import FIXTURES, Reply, ScriptedUpstream, fixture, tear

FIXTURE_NAMES = sorted(f"responses/{p.name}" for p in (FIXTURES / "responses").glob("*.sse"))
WEATHER_TOOL = {
    "type": "function",
    "name": "weather",
    "description": "Get the weather in a location",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
}


def upstream_events(name: str) -> list[dict[str, Any]]:
    events = []
    for frame in fixture(name).decode().split("\n\n"):
        data = [line[5:].strip() for line in frame.splitlines() if line.startswith("data:")]
        if data:
            events.append(json.loads("\n".join(data)))
    return events


async def run(
    replies: list[Reply], **request: Any
) -> tuple[list[Any], Any, ScriptedUpstream, Exception | None]:
    """Stream through the proxy with `client.responses.stream`; return the events, the final
    response (or None), the upstream's record and any error the SDK raised."""
    script = ScriptedUpstream(*replies)
    events: list[Any] = []
    final = None
    error: Exception | None = None
    with respx.mock(assert_all_called=False) as router:
        router.route(url__startswith=UPSTREAM).mock(side_effect=script.respx_handler)
        app = mocked_app()
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
    added = [e.output_index for e in events if e.type == "response.output_item.added"]
    assert added == list(range(len(added)))
    ids = {e.response.id for e in events if hasattr(e, "response")}
    assert len(ids) == 1


def test_every_responses_fixture_is_covered():
    assert set(FIXTURE_NAMES) == {
        "responses/azure-function-call.sse",
        "responses/lmstudio-function-call.sse",
        "responses/openai-web-search-hosted.sse",
        "responses/openai-error.sse",
    }


CALL_FIXTURES = ["responses/azure-function-call.sse", "responses/lmstudio-function-call.sse"]


async def server_call_round(name: str, pieces: list[bytes]) -> None:
    upstream = upstream_events(name)
    first_id = upstream[0]["response"]["id"]
    second = stream_round("resp_second", message_events(0, "Sunny in San Francisco", "msg_2"))
    events, final, script, error = await run([Reply(pieces), second])
    assert error is None
    check_one_response(events)
    assert final.id == first_id
    assert final.output_text.endswith("Sunny in San Francisco")
    assert not any(item.type == "function_call" for item in final.output)
    assert not any("function_call" in e.type for e in events)
    # The next round replays the input, every item of the first round, and the result.
    recorded = upstream[-1]["response"]["output"]
    sent = script.requests[1]["input"]
    assert sent[0] == {"role": "user", "content": "What's the weather in San Francisco?"}
    assert sent[1:-1] == recorded
    call = recorded[-1]
    assert sent[-1] == {
        "type": "function_call_output",
        "call_id": call["call_id"],
        "output": weather(**json.loads(call["arguments"])),
    }
    # Usage is summed: the second round reported none.
    assert final.usage.total_tokens == upstream[-1]["response"]["usage"]["total_tokens"]


async def client_call_round(name: str, pieces: list[bytes]) -> None:
    upstream = upstream_events(name)
    events, final, script, error = await run([Reply(pieces)], tools=[WEATHER_TOOL])
    assert error is None
    check_one_response(events)
    assert len(script.requests) == 1
    recorded = upstream[-1]["response"]["output"]
    assert [plain(item) for item in final.output] == [plain(item) for item in recorded]
    kinds = [e.type for e in events]
    assert kinds.count("response.output_item.added") == len(recorded)


@pytest.mark.parametrize("name", CALL_FIXTURES)
async def test_server_calls_are_hidden_and_run(name):
    await server_call_round(name, [fixture(name)])


@pytest.mark.parametrize("name", CALL_FIXTURES)
async def test_client_calls_pass_through(name):
    await client_call_round(name, [fixture(name)])


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


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    return tear(data, [c % len(data) for c in cuts])


TORN = settings(max_examples=12, deadline=None)
cuts = st.lists(st.integers(1, 1_000_000), max_size=30)


@TORN
@given(index=st.integers(0, len(CALL_FIXTURES) - 1), cuts=cuts, client_owns=st.booleans())
def test_torn_call_streams(index, cuts, client_owns):
    name = CALL_FIXTURES[index]
    check = client_call_round if client_owns else server_call_round
    asyncio.run(check(name, split(fixture(name), cuts)))


@TORN
@given(cuts=cuts)
def test_torn_hosted_and_error_streams(cuts):
    asyncio.run(hosted_tools_round(split(fixture("responses/openai-web-search-hosted.sse"), cuts)))
    asyncio.run(error_round(split(fixture("responses/openai-error.sse"), cuts)))


async def test_non_streaming_fixture_rounds():
    """The recorded final responses, served non-streamed."""
    name = "responses/lmstudio-function-call.sse"
    first = upstream_events(name)[-1]["response"]
    second = upstream_events("responses/azure-function-call.sse")[-1]["response"]
    second = {
        **second,
        "output": [
            {
                "id": "msg_2",
                "type": "message",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": "Sunny.", "annotations": []}],
            }
        ],
    }
    script = ScriptedUpstream(
        Reply(json.dumps(first).encode(), content_type="application/json"),
        Reply(json.dumps(second).encode(), content_type="application/json"),
    )
    with respx.mock() as router:
        router.route(url__startswith=UPSTREAM).mock(side_effect=script.respx_handler)
        app = mocked_app()
        async with openai_client(app) as client:
            result = await client.responses.create(model="m", input="weather?")
    assert result.id == first["id"]
    assert [i.type for i in result.output] == ["reasoning", "message", "message"]
    assert result.output_text.endswith("Sunny.")
    assert (
        result.usage.total_tokens
        == first["usage"]["total_tokens"] + second["usage"]["total_tokens"]
    )
    assert script.requests[1]["input"][-1]["type"] == "function_call_output"
