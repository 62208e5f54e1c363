"""OpenAI's hosted `mcp` tool, run by the proxy for a server a tool provider connects to: its
tools injected, its calls shown as OpenAI shows them, `require_approval` followed — as the
real `openai` client sees it. (The MCP plugin itself, with real servers: tests/test_mcp.py.)"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import ExitStack
from typing import Any

import openai
import pytest

from proxy import Origin, Tool, ToolProvider, tool
from proxy.app import create_app
from proxy.config import Settings
from proxy.responses.calls import DECLINED, UNANSWERED, Showing
from proxy.responses.stream import ResponsesStream
from proxy.tools.registry import Registry
from tests.conftest import mocked_app, openai_client, raw_client
from tests.events import (
    body_round,
    call_events,
    events_body,
    message_events,
    response,
    stream_round,
)
from tests.redis_server import redis_url  # noqa: F401 - a fixture
from tests.servers import serve, upstream_app
from tests.upstream import ScriptedUpstream

QUESTION = '{"question": "What is MCP?"}'


@tool
def weather(city: str) -> str:
    """Weather in a city."""
    return f"Sunny in {city}"


class Wiki(ToolProvider):
    """Stands for an MCP server's provider: server 'wiki', whose tool `read.structure` the
    model knows as `read_structure`."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def servers(self) -> Sequence[str]:
        return ["wiki", "down"]  # `down`: configured, no tools now

    async def start(self, config: Mapping[str, Any]) -> None:
        async def ask(question: str) -> str:
            self.asked.append(question)
            return f"Answer to {question!r}"

        def structure() -> str:
            return "1. Intro 2. Tools"

        self._tools = [
            Tool("ask_question", "Ask the wiki.", _schema("question"), ask, origin=_at("ask")),
            Tool(
                "read_structure",
                "The wiki's contents.",
                _schema(),
                structure,
                origin=Origin("wiki", "read.structure", read_only=True),
            ),
        ]

    def tools(self) -> Sequence[Tool]:
        return self._tools


def _at(name: str) -> Origin:
    return Origin("wiki", f"{name}_question")


def _schema(*names: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {n: {"type": "string"} for n in names},
        "required": list(names),
    }


def hosted(**extra: Any) -> dict[str, Any]:
    return {
        "type": "mcp",
        "server_label": "wiki",
        "server_url": "https://evil.example/mcp",
        **extra,
    }


@pytest.fixture
async def wiki() -> AsyncIterator[tuple[Registry, Wiki]]:
    registry, provider = wiki_registry()
    await registry.start({})
    yield registry, provider
    await registry.close()


@pytest.fixture
def client(wiki: tuple[Registry, Wiki], served_upstream: Any) -> openai.AsyncOpenAI:
    return openai_client(mocked_app(wiki[0]))


def ask_round(id: str = "resp_1", call_id: str = "call_a") -> Any:
    return stream_round(id, call_events(0, call_id, "ask_question", QUESTION))


async def stream(client: openai.AsyncOpenAI, **request: Any) -> tuple[list[Any], Any]:
    request.setdefault("input", "What is MCP?")
    async with client.responses.stream(model="m", **request) as s:
        events = [e async for e in s]
        return events, await s.get_final_response()


def shape(events: list[Any]) -> list[str]:
    """The event types, those about one output item marked with its index."""
    return [f"{e.type}@{e.output_index}" if hasattr(e, "output_index") else e.type for e in events]


async def test_a_configured_server_is_run_by_the_proxy_and_shown_as_openai_shows_it(
    client, upstream, wiki
):
    up = upstream(ask_round(), stream_round("resp_2", message_events(0, "MCP is a protocol.")))
    events, final = await stream(client, tools=[hosted(require_approval="never")])
    assert (
        shape(events)
        == [
            "response.created",
            "response.in_progress",
            "response.output_item.added@0",
            "response.mcp_list_tools.in_progress@0",
            "response.mcp_list_tools.completed@0",
            "response.output_item.done@0",
            "response.output_item.added@1",
            "response.mcp_call.in_progress@1",
            "response.mcp_call_arguments.delta@1",
            "response.mcp_call_arguments.delta@1",
            "response.mcp_call_arguments.done@1",
            "response.mcp_call.completed@1",
            "response.output_item.done@1",
            "response.output_item.added@2",
        ]
        + ["response.output_text.delta@2"] * 0
        + shape(events)[14:]
    )
    assert shape(events)[-2:] == ["response.output_item.done@2", "response.completed"]
    listing, call, message = final.output
    assert (listing.type, listing.server_label) == ("mcp_list_tools", "wiki")
    assert [t.name for t in listing.tools] == ["ask_question", "read.structure"]
    assert listing.tools[1].input_schema == _schema()
    assert (listing.tools[0].annotations, listing.tools[1].annotations) == (
        None,
        {"readOnlyHint": True},
    )
    assert (call.type, call.server_label, call.name) == ("mcp_call", "wiki", "ask_question")
    assert (call.output, call.error, call.status) == ("Answer to 'What is MCP?'", None, "completed")
    assert message.content[0].text == "MCP is a protocol."
    assert wiki[1].asked == ["What is MCP?"]
    assert [t.type for t in final.tools] == ["mcp"]  # the client's tools, as it sent them
    first = up.requests[0]
    assert [t.get("name") for t in first["tools"]] == ["weather", "ask_question", "read_structure"]
    assert "mcp" not in {t["type"] for t in first["tools"]}  # the URL never goes upstream
    assert up.requests[1]["input"][-1]["output"] == "Answer to 'What is MCP?'"


async def test_allowed_tools_narrow_the_servers_tools(client, upstream):
    up = upstream(stream_round("resp_1", message_events(0, "Hi.")))
    _, final = await stream(
        client, tools=[hosted(require_approval="never", allowed_tools=["read.structure"])]
    )
    assert [t.name for t in final.output[0].tools] == ["read.structure"]
    assert [t.get("name") for t in up.requests[0]["tools"]] == ["weather", "read_structure"]


async def test_allowed_tools_by_the_read_only_hint(client, upstream):
    up = upstream(stream_round("resp_1", message_events(0, "Hi.")))
    await stream(client, tools=[hosted(allowed_tools={"read_only": True})])
    assert [t.get("name") for t in up.requests[0]["tools"]] == ["weather", "read_structure"]


async def test_an_unconfigured_label_passes_upstream_untouched(client, upstream):
    other = {"type": "mcp", "server_label": "deepwiki", "server_url": "https://x.example/mcp"}
    up = upstream(stream_round("resp_1", message_events(0, "Hi.")))
    events, _ = await stream(client, tools=[other])
    assert other in up.requests[0]["tools"]
    assert "response.mcp_list_tools.in_progress" not in shape(events)
    # and the configured servers' tools are served as any server tools: hidden
    assert [t.get("name") for t in up.requests[0]["tools"]][1:] == [
        "weather",
        "ask_question",
        "read_structure",
    ]


async def test_a_configured_server_without_tools_now_is_listed_empty_never_sent_upstream(
    client, upstream
):
    up = upstream(stream_round("resp_1", message_events(0, "Hi.")))
    _, final = await stream(client, tools=[{"type": "mcp", "server_label": "down"}])
    assert (final.output[0].server_label, final.output[0].tools) == ("down", [])
    assert "mcp" not in {t["type"] for t in up.requests[0]["tools"]}


async def test_approval_always_holds_the_call_until_the_client_approves_it(client, upstream, wiki):
    """OpenAI's default: a call waits for approval; the next request approves it by
    `previous_response_id`, and the model reads the result."""
    up = upstream(ask_round(), stream_round("resp_2", message_events(0, "It is a protocol.")))
    events, first = await stream(client, tools=[hosted()])
    _, request = first.output
    assert (request.type, request.id, request.server_label) == (
        "mcp_approval_request",
        "mcpr_call_a",
        "wiki",
    )
    assert (request.name, json.loads(request.arguments)) == (
        "ask_question",
        json.loads(QUESTION),
    )
    assert wiki[1].asked == []  # held, not run
    assert len(up.requests) == 1  # the response ended with the request

    answer = {"type": "mcp_approval_response", "approval_request_id": request.id, "approve": True}
    events, second = await stream(
        client, tools=[hosted()], previous_response_id=first.id, input=[answer]
    )
    assert wiki[1].asked == ["What is MCP?"]
    call, message = second.output  # no second listing: the conversation has it
    assert (call.type, call.approval_request_id, call.output) == (
        "mcp_call",
        "mcpr_call_a",
        "Answer to 'What is MCP?'",
    )
    assert message.content[0].text == "It is a protocol."
    assert up.requests[1]["previous_response_id"] == "resp_1"
    assert up.requests[1]["input"] == [
        {
            "type": "function_call_output",
            "call_id": "call_a",
            "output": "Answer to 'What is MCP?'",
        }
    ]
    assert shape(events)[2:6] == [
        "response.output_item.added@0",
        "response.mcp_call.in_progress@0",
        "response.mcp_call.completed@0",
        "response.output_item.done@0",
    ]


async def test_a_refused_call_is_never_run_and_the_model_reads_why(client, upstream, wiki):
    up = upstream(ask_round(), stream_round("resp_2", message_events(0, "Fine.")))
    _, first = await stream(client, tools=[hosted()])
    answer = {
        "type": "mcp_approval_response",
        "approval_request_id": "mcpr_call_a",
        "approve": False,
        "reason": "not now",
    }
    _, second = await stream(
        client, tools=[hosted()], previous_response_id=first.id, input=[answer]
    )
    assert wiki[1].asked == []
    assert [item.type for item in second.output] == ["message"]
    assert up.requests[1]["input"][0]["output"] == DECLINED + ": not now"


async def test_a_replayed_conversation_approves_without_the_store(client, upstream, wiki):
    """A client that keeps the state itself replays what it saw: the request item stands for
    the call, the response for its output; nothing is listed twice or run twice."""
    up = upstream(
        ask_round(),
        stream_round("resp_2", message_events(0, "A protocol.")),
        stream_round("resp_3", message_events(0, "You are welcome.")),
    )
    user = {"role": "user", "content": "What is MCP?"}
    _, first = await stream(client, tools=[hosted()], input=[user], store=False)
    seen = [item.model_dump(exclude_none=True) for item in first.output]
    answer = {
        "type": "mcp_approval_response",
        "approval_request_id": "mcpr_call_a",
        "approve": True,
    }
    _, second = await stream(client, tools=[hosted()], input=[user, *seen, answer], store=False)
    assert [item.type for item in second.output] == ["mcp_call", "message"]
    assert up.requests[1]["input"] == [
        user,
        {
            "type": "function_call",
            "call_id": "call_a",
            "name": "ask_question",
            "arguments": QUESTION,
        },
        {
            "type": "function_call_output",
            "call_id": "call_a",
            "output": "Answer to 'What is MCP?'",
        },
    ]
    later = [item.model_dump(exclude_none=True) for item in second.output]
    thanks = {"role": "user", "content": "Thanks!"}
    await stream(client, tools=[hosted()], input=[user, *seen, answer, *later, thanks], store=False)
    assert wiki[1].asked == ["What is MCP?"]  # the replayed approval is not run again
    replayed = up.requests[2]["input"]
    assert replayed[:3] == up.requests[1]["input"]  # the mcp_call stands for call and output
    assert [item.get("type") for item in replayed[3:]] == ["message", None]


async def test_approval_per_tool_never_runs_those_and_holds_the_rest(client, upstream, wiki):
    up = upstream(
        stream_round(
            "resp_1",
            call_events(0, "call_r", "read_structure", "{}"),
            call_events(1, "call_a", "ask_question", QUESTION),
        ),
    )
    rule = {"never": {"tool_names": ["read.structure"]}}
    _, final = await stream(client, tools=[hosted(require_approval=rule)])
    assert [(i.type, getattr(i, "name", None)) for i in final.output] == [
        ("mcp_list_tools", None),
        ("mcp_call", "read.structure"),
        ("mcp_approval_request", "ask_question"),
    ]
    assert final.output[1].output == "1. Intro 2. Tools"
    assert wiki[1].asked == []
    assert len(up.requests) == 1  # the client must answer first


async def test_always_wins_where_both_filters_match(client, upstream):
    upstream(stream_round("resp_1", call_events(0, "call_r", "read_structure", "{}")))
    rule = {"never": {"read_only": True}, "always": {"tool_names": ["read.structure"]}}
    _, final = await stream(client, tools=[hosted(require_approval=rule)])
    assert final.output[-1].type == "mcp_approval_request"


async def test_non_streaming_shows_the_same_items(client, upstream, wiki):
    upstream(
        body_round("resp_1", call_events(0, "call_a", "ask_question", QUESTION)[1]),
        body_round("resp_2", message_events(0, "Done.")[1]),
        body_round("resp_3", call_events(0, "call_b", "ask_question", QUESTION)[1]),
    )
    final = await client.responses.create(
        model="m", input="hi", tools=[hosted(require_approval="never")]
    )
    assert [item.type for item in final.output] == ["mcp_list_tools", "mcp_call", "message"]
    assert final.output[1].output == "Answer to 'What is MCP?'"
    held = await client.responses.create(model="m", input="hi", tools=[hosted()])
    assert held.output[-1].type == "mcp_approval_request"


async def test_tool_choice_of_a_hosted_server_becomes_a_function_choice(client, upstream):
    up = upstream(stream_round("resp_1", message_events(0, "Hi.")))
    choice = {"type": "mcp", "server_label": "wiki", "name": "read.structure"}
    await stream(client, tools=[hosted()], tool_choice=choice)
    assert up.requests[0]["tool_choice"] == {"type": "function", "name": "read_structure"}


async def test_a_background_response_cannot_use_a_configured_server(wiki, served_upstream):
    async with raw_client(wiki[0], upstream=served_upstream.url) as http:
        reply = await http.post(
            "/v1/responses",
            json={"model": "m", "input": "hi", "background": True, "tools": [hosted()]},
        )
    assert reply.status_code == 400
    assert reply.json()["error"]["param"] == "background"


@pytest.mark.parametrize(
    ("field", "value", "param"),
    [
        ("require_approval", 3, "tools[0].require_approval"),
        (
            "require_approval",
            {"never": {"tool_names": "x"}},
            "tools[0].require_approval.never.tool_names",
        ),
        ("allowed_tools", "read", "tools[0].allowed_tools"),
        ("allowed_tools", [1], "tools[0].allowed_tools[0]"),
    ],
)
async def test_a_hosted_tool_that_cannot_be_read_is_openais_400(wiki, field, value, param):
    async with raw_client(wiki[0]) as http:
        reply = await http.post(
            "/v1/responses", json={"model": "m", "input": "hi", "tools": [hosted(**{field: value})]}
        )
    assert reply.status_code == 400
    assert (reply.json()["error"]["param"], reply.json()["error"]["code"]) == (
        param,
        "invalid_type",
    )


async def test_an_approval_response_without_its_decision_is_openais_400(wiki):
    answer = {"type": "mcp_approval_response", "approval_request_id": "mcpr_x"}
    async with raw_client(wiki[0]) as http:
        reply = await http.post("/v1/responses", json={"model": "m", "input": [answer]})
    assert reply.status_code == 400
    assert reply.json()["error"]["code"] == "missing_required_parameter"
    assert reply.json()["error"]["param"] == "input[0].approve"


def wiki_registry() -> tuple[Registry, Wiki]:
    provider = Wiki()
    registry = Registry.of(weather, plugin="weather")
    registry.provide(provider, "mcp")
    return registry, provider


def test_an_approval_on_another_replica(redis_url: str) -> None:  # noqa: F811
    """The held call is in the store: another replica runs it when the client approves."""
    (one, wiki_one), (two, wiki_two) = wiki_registry(), wiki_registry()
    script = ScriptedUpstream(
        body_round("resp_1", call_events(0, "call_a", "ask_question", QUESTION)[1]),
        body_round("resp_2", message_events(0, "Yes.")[1]),
    )
    with ExitStack() as stack:
        upstream_url = stack.enter_context(serve(upstream_app(script)))
        settings = Settings(upstream=upstream_url + "/v1", store=redis_url)
        first, second = (
            openai.OpenAI(
                api_key="sk-a",
                base_url=stack.enter_context(serve(create_app(settings, registry))) + "/v1",
                max_retries=0,
            )
            for registry in (one, two)
        )
        held = first.responses.create(model="m", input="hi", tools=[hosted()])
        answer = {
            "type": "mcp_approval_response",
            "approval_request_id": held.output[-1].id,
            "approve": True,
        }
        done = second.responses.create(
            model="m", tools=[hosted()], previous_response_id=held.id, input=[answer]
        )
    assert [item.type for item in done.output] == ["mcp_call", "message"]
    assert (wiki_one.asked, wiki_two.asked) == ([], ["What is MCP?"])


def test_the_list_comes_as_soon_as_the_response_started() -> None:
    """Before the model's first event: a slow model does not hold it back."""
    listing = {"type": "mcp_list_tools", "id": "mcpl_1", "server_label": "wiki", "tools": []}
    stream = ResponsesStream(Showing(frozenset()), [hosted()], [listing])
    started = events_body(
        {"type": "response.created", "response": response("resp_1", status="in_progress")},
        {"type": "response.in_progress", "response": response("resp_1", status="in_progress")},
    )
    out = stream.feed(started)
    assert out.count(b"event: response.mcp_list_tools.completed\n") == 1


def types_of(items: list[Any]) -> list[Any]:
    return [item.get("type", item.get("role")) for item in items]


USER = {"role": "user", "content": "What is MCP?"}


def approve(request_id: str) -> dict[str, Any]:
    return {"type": "mcp_approval_response", "approval_request_id": request_id, "approve": True}


async def test_an_approval_is_run_once_whatever_the_client_resends(client, upstream, wiki):
    """Twice in one input, or again on a later turn: the held call runs once — a later turn
    continues another response, whose held calls these are not: OpenAI's 400."""
    up = upstream(ask_round(), stream_round("resp_2", message_events(0, "ok")))
    _, first = await stream(client, tools=[hosted()])
    answer = {
        "type": "mcp_approval_response",
        "approval_request_id": "mcpr_call_a",
        "approve": True,
    }
    _, second = await stream(
        client, tools=[hosted()], previous_response_id=first.id, input=[answer, answer]
    )
    assert [item.type for item in second.output] == ["mcp_call", "message"]
    assert types_of(up.requests[1]["input"]) == ["function_call_output"]
    with pytest.raises(openai.BadRequestError) as refused:
        await stream(client, tools=[hosted()], previous_response_id=second.id, input=[answer])
    assert refused.value.body["param"] == "input[0].approval_request_id"  # type: ignore[index]
    assert wiki[1].asked == ["What is MCP?"]
    assert len(up.requests) == 2


async def test_an_approval_the_proxy_never_made_is_a_400_not_sent_upstream(client, upstream):
    upstream()
    answer = {"type": "mcp_approval_response", "approval_request_id": "mcpr_gone", "approve": True}
    with pytest.raises(openai.BadRequestError, match="No MCP approval request 'mcpr_gone'"):
        await stream(client, tools=[hosted()], input=[USER, answer])


async def test_an_approval_for_the_upstreams_own_mcp_tool_goes_upstream(client, upstream):
    up = upstream(stream_round("resp_1", message_events(0, "ok")))
    theirs = {"type": "mcp", "server_label": "deepwiki", "server_url": "https://x.example/mcp"}
    answer = {"type": "mcp_approval_response", "approval_request_id": "mcpr_x", "approve": True}
    await stream(client, tools=[theirs], input=[USER, answer])
    assert up.requests[0]["input"][-1] == answer


async def test_an_unanswered_approval_gets_an_output_upstream(client, upstream, wiki):
    """Every call needs an output upstream: a held call the client goes on without answering
    gets one saying it did not run — replayed, or continued by `previous_response_id`."""
    up = upstream(
        ask_round(),
        stream_round("resp_2", message_events(0, "ok")),
        ask_round("resp_3", "call_b"),
        stream_round("resp_4", message_events(0, "ok")),
    )
    _, first = await stream(client, tools=[hosted()], input=[USER], store=False)
    seen = [item.model_dump(exclude_none=True) for item in first.output]
    moving_on = {"role": "user", "content": "never mind"}
    await stream(client, tools=[hosted()], input=[USER, *seen, moving_on], store=False)
    assert up.requests[1]["input"][1:3] == [
        {
            "type": "function_call",
            "call_id": "call_a",
            "name": "ask_question",
            "arguments": QUESTION,
        },
        {"type": "function_call_output", "call_id": "call_a", "output": UNANSWERED},
    ]
    _, third = await stream(client, tools=[hosted()])
    await stream(client, tools=[hosted()], previous_response_id=third.id, input=[moving_on])
    assert up.requests[3]["previous_response_id"] == "resp_3"
    assert up.requests[3]["input"] == [
        {"type": "function_call_output", "call_id": "call_b", "output": UNANSWERED},
        moving_on,
    ]
    assert wiki[1].asked == []


async def test_replayed_items_of_the_proxys_servers_never_reach_the_upstream(client, upstream):
    """Narrowed on a later turn, or a server without tools now: its items are the proxy's."""
    up = upstream(
        stream_round("resp_1", call_events(0, "call_r", "read_structure", "{}")),
        stream_round("resp_2", message_events(0, "A protocol.")),
        stream_round("resp_3", message_events(0, "ok")),
    )
    tools = [hosted(require_approval="never"), {"type": "mcp", "server_label": "down"}]
    _, first = await stream(client, tools=tools, input=[USER], store=False)
    seen = [item.model_dump(exclude_none=True) for item in first.output]
    assert types_of(seen)[:3] == ["mcp_list_tools", "mcp_list_tools", "mcp_call"]
    narrowed = [hosted(require_approval="never", allowed_tools=["ask_question"]), tools[1]]
    more = {"role": "user", "content": "more"}
    await stream(client, tools=narrowed, input=[USER, *seen, more], store=False)
    assert up.requests[2]["input"][1]["name"] == "read_structure"  # the model's name for it
    assert types_of(up.requests[2]["input"]) == [
        "user",
        "function_call",
        "function_call_output",
        "message",
        "user",
    ]


async def test_a_mixed_round_ends_with_the_clients_call_and_the_held_one(wiki, upstream):
    """The client's own function, a held call and a run call in one round: all three answered
    upstream when the client comes back with its output and its approval."""
    lookup = {"type": "function", "name": "lookup", "parameters": {"type": "object"}}
    rule = {"never": {"tool_names": ["read.structure"]}}
    up = upstream(
        stream_round(
            "resp_1",
            call_events(0, "call_c", "lookup", "{}"),
            call_events(1, "call_a", "ask_question", QUESTION),
            call_events(2, "call_r", "read_structure", "{}"),
        ),
        body_round("resp_2", message_events(0, "done")[1]),
    )
    client = openai_client(mocked_app(wiki[0]))
    events, first = await stream(client, tools=[lookup, hosted(require_approval=rule)])
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert [(i.type, getattr(i, "name", None)) for i in first.output] == [
        ("mcp_list_tools", None),
        ("function_call", "lookup"),
        ("mcp_approval_request", "ask_question"),
        ("mcp_call", "read.structure"),
    ]
    answers = [
        {"type": "function_call_output", "call_id": "call_c", "output": "42"},
        {"type": "mcp_approval_response", "approval_request_id": "mcpr_call_a", "approve": True},
    ]
    second = await client.responses.create(
        model="m", input=answers, previous_response_id=first.id, tools=[lookup, hosted()]
    )
    assert sorted(i["call_id"] for i in up.requests[1]["input"]) == ["call_a", "call_c", "call_r"]
    assert [item.type for item in second.output] == ["mcp_call", "message"]


async def test_a_shown_call_that_never_ran_is_incomplete_in_a_whole_body(wiki, upstream):
    upstream(
        body_round("resp_1", call_events(0, "call_a", "ask_question", QUESTION)[1]),
        body_round("resp_2", call_events(0, "call_b", "ask_question", '{"question": "b"}')[1]),
    )
    client = openai_client(mocked_app(wiki[0], max_rounds=2))
    final = await client.responses.create(
        model="m", input="q", tools=[hosted(require_approval="never")]
    )
    assert [(item.type, item.status) for item in final.output[1:]] == [
        ("mcp_call", "completed"),
        ("mcp_call", "incomplete"),
    ]


def test_a_held_call_is_asked_for_when_the_upstream_sends_no_item_done() -> None:
    showing = Showing(frozenset({"ask"}), {"ask": ("wiki", "ask")}, frozenset({"ask"}))
    stream = ResponsesStream(showing)
    events, done = call_events(0, "call_a", "ask", QUESTION)
    body = events_body(
        {"type": "response.created", "response": response("r", status="in_progress")},
        *(e for e in events if e["type"] != "response.output_item.done"),
        {"type": "response.completed", "response": response("r", [done])},
    )
    stream.feed(body)
    outcome = stream.end_round()
    assert (outcome.client_calls, outcome.server_calls) == (1, [])
    assert b'"type":"mcp_approval_request"' in b"".join(outcome.tail)
    assert list(stream.held) == ["mcpr_call_a"]


async def test_the_response_never_echoes_a_hosted_tools_credentials(client, upstream):
    upstream(stream_round("resp_1", message_events(0, "Hi.")))
    secret = hosted(authorization="tok", headers={"X-Key": "k"})
    _, final = await stream(client, tools=[secret])
    (echoed,) = [t.model_dump(exclude_none=True) for t in final.tools]
    assert "authorization" not in echoed and "headers" not in echoed
    assert echoed["server_label"] == "wiki"


async def test_tool_choice_naming_a_tool_the_server_lacks_is_a_400(client, upstream):
    upstream()
    choice = {"type": "mcp", "server_label": "wiki", "name": "nope"}
    with pytest.raises(openai.BadRequestError, match=r"'ask_question', 'read\.structure'"):
        await stream(client, tools=[hosted()], tool_choice=choice)
