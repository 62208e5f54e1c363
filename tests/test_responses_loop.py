"""The round loop over the Responses API, as the real `openai` client sees it (DESIGN §3)."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from tests.conftest import SERVER_TOOLS, mocked_app, openai_client, raw_client, weather
from tests.events import (
    body_round,
    call_events,
    events_body,
    message_events,
    response,
    stream_round,
    usage,
)
from tests.upstream import Reply, sse_frames

LOOKUP = {"type": "function", "name": "lookup", "parameters": {"type": "object"}}


def make_client(**settings: Any) -> openai.AsyncOpenAI:
    return openai_client(mocked_app(**settings))


async def stream(client: openai.AsyncOpenAI, **request: Any) -> tuple[list[Any], Any]:
    async with client.responses.stream(model="m", input=request.pop("input", "hi"), **request) as s:
        events = [e async for e in s]
        return events, await s.get_final_response()


def sequence_ok(events: list[Any]) -> None:
    assert [e.sequence_number for e in events] == list(range(len(events)))
    added = [e.output_index for e in events if e.type == "response.output_item.added"]
    assert added == list(range(len(added)))


def weather_call(index: int = 0, call_id: str = "call_w", location: str = "Oslo"):
    return call_events(index, call_id, "weather", json.dumps({"location": location}))


async def test_rounds_stitch_into_one_response_with_summed_usage(upstream):
    up = upstream(
        stream_round(
            "resp_1", message_events(0, "Checking.", "msg_a"), weather_call(1), usage=usage(10, 5)
        ),
        stream_round("resp_2", message_events(0, "Sunny in Oslo.", "msg_b"), usage=usage(30, 8)),
    )
    events, final = await stream(make_client())
    sequence_ok(events)
    assert final.id == "resp_1"
    assert [i.id for i in final.output] == ["msg_a", "msg_b"]
    assert final.output_text == "Checking.Sunny in Oslo."
    assert (final.usage.input_tokens, final.usage.output_tokens) == (40, 13)
    assert [e.type for e in events].count("response.completed") == 1
    assert "weather" not in {t.name for t in final.tools if t.type == "function"}
    assert up.requests[1]["input"][-1] == {
        "type": "function_call_output",
        "call_id": "call_w",
        "output": weather(location="Oslo"),
    }
    assert "previous_response_id" not in up.requests[1]


@pytest.mark.parametrize("state", [{"previous_response_id": "resp_0"}, {"store": True}])
async def test_upstream_state_chains_rounds_with_previous_response_id(upstream, state):
    up = upstream(
        stream_round("resp_1", weather_call()),
        stream_round("resp_2", message_events(0, "Sunny.")),
    )
    _, final = await stream(make_client(), **state)
    assert final.id == "resp_1"
    assert up.requests[1]["previous_response_id"] == "resp_1"
    assert up.requests[1]["input"] == [
        {"type": "function_call_output", "call_id": "call_w", "output": weather(location="Oslo")}
    ]


async def test_a_conversation_carries_the_rounds_itself(upstream):
    up = upstream(
        stream_round("resp_1", weather_call()),
        stream_round("resp_2", message_events(0, "Sunny.")),
    )
    await stream(make_client(), conversation="conv_1")
    assert up.requests[1]["conversation"] == "conv_1"
    assert "previous_response_id" not in up.requests[1]
    assert [i["type"] for i in up.requests[1]["input"]] == ["function_call_output"]


async def test_the_client_continues_from_the_round_that_ended_its_response(upstream):
    up = upstream(
        stream_round("resp_1", weather_call()),
        stream_round("resp_2", message_events(0, "Sunny.")),
        stream_round("resp_3", message_events(0, "You're welcome.")),
    )
    client = make_client()
    _, first = await stream(client, store=True)
    await stream(client, previous_response_id=first.id, input="thanks")
    assert first.id == "resp_1"
    assert up.requests[2]["previous_response_id"] == "resp_2"


async def test_forced_tool_choice_holds_for_the_first_round_only(upstream):
    up = upstream(
        stream_round("resp_1", weather_call()),
        stream_round("resp_2", message_events(0, "Sunny.")),
    )
    await stream(make_client(), tool_choice="required")
    assert [r["tool_choice"] for r in up.requests] == ["required", "auto"]


async def test_the_last_round_allows_no_tool(upstream):
    up = upstream(
        stream_round("resp_1", weather_call(location="a")),
        stream_round("resp_2", weather_call(call_id="call_2", location="b")),
        stream_round("resp_3", message_events(0, "Enough.")),
    )
    _, final = await stream(make_client(max_rounds=3))
    assert final.output_text == "Enough."
    assert [r.get("tool_choice") for r in up.requests] == [None, None, "none"]


async def test_mixed_round_forwards_the_clients_call(upstream):
    up = upstream(
        stream_round("resp_1", weather_call(0), call_events(1, "call_l", "lookup", '{"q": 1}'))
    )
    events, final = await stream(make_client(), tools=[LOOKUP])
    sequence_ok(events)
    assert [(i.type, i.call_id) for i in final.output] == [("function_call", "call_l")]
    assert len(up.requests) == 1
    assert final.output[0].arguments == '{"q": 1}'


async def test_a_client_tool_with_a_server_tools_name_wins(upstream):
    mine = {"type": "function", "name": "weather", "parameters": {"type": "object"}}
    up = upstream(stream_round("resp_1", weather_call()))
    _, final = await stream(make_client(), tools=[mine])
    assert [t for t in up.requests[0]["tools"] if t["name"] == "weather"] == [mine]
    assert final.output[0].name == "weather"


async def test_server_tools_go_upstream_as_function_tools(upstream):
    up = upstream(stream_round("resp_1", message_events(0, "Hi.")))
    await stream(make_client())
    tool = next(t for t in up.requests[0]["tools"] if t["name"] == "weather")
    assert tool == {
        "type": "function",
        "name": "weather",
        "description": "Get the weather in a location.",
        "parameters": SERVER_TOOLS["weather"].tool.parameters,
        "strict": False,
    }


async def test_calls_shown_as_mcp_items_and_taken_back(upstream):
    up = upstream(
        stream_round("resp_1", weather_call()),
        stream_round("resp_2", message_events(0, "Sunny.")),
        stream_round("resp_3", message_events(0, "Bye.")),
    )
    client = make_client(show_calls=True)
    events, final = await stream(client)
    sequence_ok(events)
    kinds = [e.type for e in events]
    for kind in (
        "response.mcp_call.in_progress",
        "response.mcp_call_arguments.delta",
        "response.mcp_call_arguments.done",
        "response.mcp_call.completed",
    ):
        assert kind in kinds
    mcp = final.output[0]
    assert (mcp.type, mcp.name, mcp.server_label, mcp.status) == (
        "mcp_call",
        "weather",
        "openai-tool-proxy",
        "completed",
    )
    assert mcp.output == weather(location="Oslo")
    assert json.loads(mcp.arguments) == {"location": "Oslo"}
    # Sending the items back: the upstream sees a call and its output.
    history = [item.to_dict() for item in final.output]
    await stream(client, input=[*history, {"role": "user", "content": "thanks"}])
    sent = up.requests[2]["input"]
    assert sent[0] == {
        "type": "function_call",
        "call_id": "call_w",
        "name": "weather",
        "arguments": mcp.arguments,
    }
    assert sent[1] == {
        "type": "function_call_output",
        "call_id": "call_w",
        "output": weather(location="Oslo"),
    }
    assert sent[2]["id"] == "msg_1"


async def test_an_upstream_error_before_any_event_keeps_its_status(upstream):
    body = {
        "error": {
            "message": "bad model",
            "type": "invalid_request_error",
            "param": "model",
            "code": None,
        }
    }
    upstream(Reply(json.dumps(body).encode(), status=400, content_type="application/json"))
    with pytest.raises(openai.BadRequestError) as caught:
        await stream(make_client())
    assert caught.value.body == body["error"]


async def test_a_round_failing_after_events_ends_with_response_failed(upstream):
    upstream(
        stream_round("resp_1", message_events(0, "Checking."), weather_call(1)),
        Reply(b'{"error": {"message": "overloaded"}}', status=503, content_type="application/json"),
    )
    async with raw_client() as http:
        raw = (
            await http.post("/v1/responses", json={"model": "m", "input": "hi", "stream": True})
        ).text
    frames = sse_frames(raw)
    last = json.loads(frames[-1].split("data: ", 1)[1])
    assert last["type"] == "response.failed"
    assert last["response"]["error"] == {"code": "upstream_error", "message": "overloaded"}
    assert last["response"]["id"] == "resp_1"
    assert [o["id"] for o in last["response"]["output"]] == ["msg_1"]
    seqs = [json.loads(f.split("data: ", 1)[1])["sequence_number"] for f in frames]
    assert seqs == list(range(len(frames)))


async def test_a_stream_cut_before_its_terminal_event_fails_cleanly(upstream):
    events = [{"type": "response.created", "response": response("resp_1", status="in_progress")}]
    upstream(Reply(events_body(*events)))
    async with make_client().responses.stream(model="m", input="hi") as s:
        seen = [e async for e in s]
    assert [e.type for e in seen] == ["response.created", "response.failed"]
    assert seen[-1].response.error.message == (
        "the upstream stream ended before the response completed"
    )


async def test_background_responses_pass_straight_through(upstream):
    body = json.dumps(response("resp_bg", status="queued")).encode()
    up = upstream(Reply(body, content_type="application/json"))
    async with raw_client() as http:
        sent = {"model": "m", "input": "hi", "background": True}
        result = await http.post("/v1/responses", json=sent)
    assert result.content == body
    assert up.requests[0] == sent


async def test_non_streaming_rounds_merge(upstream):
    up = upstream(
        body_round(
            "resp_1",
            {
                "id": "fc_1",
                "type": "function_call",
                "call_id": "call_w",
                "name": "weather",
                "arguments": '{"location": "Oslo"}',
                "status": "completed",
            },
            usage=usage(10, 5),
        ),
        body_round(
            "resp_2",
            {
                "id": "msg_2",
                "type": "message",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": "Sunny.", "annotations": []}],
            },
            usage=usage(20, 5),
        ),
    )
    result = await make_client().responses.create(model="m", input="hi")
    assert result.id == "resp_1"
    assert [i.id for i in result.output] == ["msg_2"]
    assert result.usage.total_tokens == 40
    assert up.requests[1]["input"][1]["call_id"] == "call_w"


async def test_non_streaming_shows_calls_as_mcp_items(upstream):
    upstream(
        body_round(
            "resp_1",
            {
                "id": "fc_1",
                "type": "function_call",
                "call_id": "call_w",
                "name": "weather",
                "arguments": '{"location": "Oslo"}',
            },
        ),
        body_round(
            "resp_2",
            {
                "id": "msg_2",
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Sunny.", "annotations": []}],
            },
        ),
    )
    result = await make_client(show_calls=True).responses.create(model="m", input="hi")
    assert [i.type for i in result.output] == ["mcp_call", "message"]
    assert result.output[0].output == weather(location="Oslo")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"nope", "could not parse"),
        (
            b'{"model": "m", "input": 3}',
            "Invalid type for 'input': expected one of a string or array of objects",
        ),
        (b'{"model": "m", "tools": {}}', "Invalid type for 'tools': expected an array of objects"),
    ],
)
async def test_bad_request_bodies_are_400s(body, message):
    async with raw_client() as http:
        result = await http.post("/v1/responses", content=body)
    assert result.status_code == 400
    assert message in result.json()["error"]["message"]


def reasoning_events(index: int, id: str = "rs_1"):
    item = {"id": id, "type": "reasoning", "summary": [], "encrypted_content": "gAAA"}
    return (
        [
            {"type": "response.output_item.added", "output_index": index, "item": item},
            {"type": "response.output_item.done", "output_index": index, "item": item},
        ],
        item,
    )


async def test_a_replayed_conversation_gets_the_hidden_calls_back(upstream):
    up = upstream(
        stream_round("resp_1", reasoning_events(0), weather_call(1)),
        stream_round("resp_2", message_events(0, "Sunny.", "msg_2")),
        stream_round("resp_3", message_events(0, "Bye.", "msg_3")),
    )
    client = make_client()
    _, final = await stream(client, input=[{"role": "user", "content": "weather?"}])
    assert [i.type for i in final.output] == ["reasoning", "message"]
    replay = [
        {"role": "user", "content": "weather?"},
        *(item.to_dict() for item in final.output),
        {"role": "user", "content": "thanks"},
    ]
    await stream(client, input=replay)
    sent = up.requests[2]["input"]
    assert [i.get("type") or i["role"] for i in sent] == [
        "user",
        "reasoning",
        "function_call",
        "function_call_output",
        "message",
        "user",
    ]
    assert sent[2]["call_id"] == sent[3]["call_id"] == "call_w"
    assert sent[3]["output"] == weather(location="Oslo")


async def test_a_client_custom_tool_call_ends_the_round_too(upstream):
    custom = {
        "id": "ctc_1",
        "type": "custom_tool_call",
        "call_id": "call_c",
        "name": "grep",
        "input": "foo",
    }
    events = (
        [
            {"type": "response.output_item.added", "output_index": 1, "item": custom},
            {"type": "response.output_item.done", "output_index": 1, "item": custom},
        ],
        custom,
    )
    up = upstream(stream_round("resp_1", weather_call(0), events))
    _, final = await stream(make_client(), tools=[{"type": "custom", "name": "grep"}])
    assert [i.type for i in final.output] == ["custom_tool_call"]
    assert len(up.requests) == 1


async def test_a_mixed_round_leaves_its_outputs_for_a_chained_follow_up(upstream):
    up = upstream(
        stream_round("resp_1", weather_call(0), call_events(1, "call_l", "lookup", "{}")),
        stream_round("resp_2", message_events(0, "Done.")),
    )
    client = make_client()
    _, final = await stream(client, tools=[LOOKUP], store=True)
    mine = {"type": "function_call_output", "call_id": "call_l", "output": "42"}
    await stream(client, previous_response_id=final.id, input=[mine], tools=[LOOKUP])
    assert up.requests[1]["previous_response_id"] == "resp_1"
    assert up.requests[1]["input"] == [
        {"type": "function_call_output", "call_id": "call_w", "output": weather(location="Oslo")},
        mine,
    ]


async def test_a_replayed_mixed_round_gets_the_leading_hidden_call_back(upstream):
    up = upstream(
        stream_round("resp_1", weather_call(0), call_events(1, "call_l", "lookup", "{}")),
        stream_round("resp_2", message_events(0, "Done.")),
    )
    client = make_client()
    _, final = await stream(client, tools=[LOOKUP], input=[{"role": "user", "content": "go"}])
    replay = [
        {"role": "user", "content": "go"},
        *(i.to_dict() for i in final.output),
        {"type": "function_call_output", "call_id": "call_l", "output": "42"},
    ]
    await stream(client, tools=[LOOKUP], input=replay)
    sent = up.requests[1]["input"]
    assert [(i.get("type"), i.get("call_id")) for i in sent[1:]] == [
        ("function_call", "call_w"),
        ("function_call_output", "call_w"),
        ("function_call", "call_l"),
        ("function_call_output", "call_l"),
    ]


async def test_without_upstream_storage_reasoning_comes_back_encrypted(upstream):
    up = upstream(
        stream_round("resp_1", weather_call()),
        stream_round("resp_2", message_events(0, "Sunny.")),
    )
    await stream(make_client(), store=False, include=["message.output_text.logprobs"])
    for request in up.requests:
        assert request["include"] == ["message.output_text.logprobs", "reasoning.encrypted_content"]


async def test_allowed_tools_keep_their_list_after_the_first_round(upstream):
    choice = {
        "type": "allowed_tools",
        "mode": "required",
        "tools": [{"type": "function", "name": "weather"}],
    }
    up = upstream(
        stream_round("resp_1", weather_call()),
        stream_round("resp_2", message_events(0, "Sunny.")),
    )
    await stream(make_client(), tool_choice=choice)
    assert up.requests[1]["tool_choice"] == {**choice, "mode": "auto"}
