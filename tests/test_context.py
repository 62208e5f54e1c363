"""A tool's `RequestContext`: declared as a parameter, filled by the runner with the request id,
the client key's name and the headers the tool chose — never in the schema the model sees, and
never given by the model."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from proxy import RequestContext, ToolDefinitionError, tool
from proxy.config import Client
from proxy.tools.context import Caller
from proxy.tools.registry import Registry
from proxy.tools.runner import ToolCall, ToolRunner
from tests.chunks import calls_round, text_round
from tests.conftest import mocked_app, openai_client
from tests.events import call_events, message_events, stream_round
from tests.upstream import ScriptedUpstream

seen: list[RequestContext] = []


@tool(context_headers=["X-User-Id"])
def whoami(greeting: str, ctx: RequestContext) -> str:
    """Greet the caller by name."""
    seen.append(ctx)
    return f"{greeting}, {ctx.headers.get('x-user-id')}"


@tool(context_headers=["x-user-id", "x-tenant"])
async def whoami_async(greeting: str, ctx: RequestContext) -> str:
    """Greet the caller by name."""
    seen.append(ctx)
    return f"{greeting}, {ctx.headers.get('x-user-id')}"


TEAM_A = Client("team-a", "sk-team-a")
HEADERS = {
    "X-Request-ID": "req-42",
    "X-User-Id": "u-7",
    "X-Other": "not chosen",
}


@pytest.fixture(autouse=True)
def _fresh() -> None:
    seen.clear()


@pytest.mark.parametrize("handler", [whoami, whoami_async], ids=["sync", "async"])
async def test_a_tool_receives_its_request_context(
    upstream: Callable[..., ScriptedUpstream], handler: Any
) -> None:
    up = upstream(calls_round(("c1", handler.name, '{"greeting": "Hi"}')), text_round("done"))
    app = mocked_app(Registry.of(handler), clients=(TEAM_A,), upstream_api_key="sk-up")
    client = openai_client(app).with_options(api_key="sk-team-a")
    stream = await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hi"}], stream=True, extra_headers=HEADERS
    )
    assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices]) == "done"
    assert seen == [RequestContext("req-42", "team-a", {"x-user-id": "u-7"})]
    assert up.requests[1]["messages"][-1]["content"] == "Hi, u-7"
    schema = up.requests[0]["tools"][0]["function"]["parameters"]
    assert schema["properties"] == {"greeting": {"type": "string"}}  # the model never sees ctx
    assert schema["required"] == ["greeting"]


async def test_the_context_on_responses_without_client_keys(
    upstream: Callable[..., ScriptedUpstream],
) -> None:
    up = upstream(
        stream_round("resp_1", call_events(0, "c1", "whoami", '{"greeting": "Hi"}')),
        stream_round("resp_2", message_events(0, "done")),
    )
    client = openai_client(mocked_app(Registry.of(whoami)))
    stream = await client.responses.create(
        model="m", input="hi", stream=True, extra_headers={"x-user-id": "u-9"}
    )
    events = [event async for event in stream]
    assert events[-1].type == "response.completed"
    assert seen[0].client is None  # no client keys: no name
    assert seen[0].request_id  # the one the proxy gave the request
    assert seen[0].headers == {"x-user-id": "u-9"}
    assert set(up.requests[0]["tools"][0]["parameters"]["properties"]) == {"greeting"}


async def test_the_model_cannot_give_the_context() -> None:
    runner = ToolRunner(Registry.of(whoami), 5)
    arguments = json.dumps({"greeting": "Hi", "ctx": {"client": "admin"}})
    result = await runner.run(ToolCall("c1", "whoami", arguments))
    assert not result.ok and "unexpected argument" in result.output
    assert not seen


async def test_a_tool_with_a_given_schema_still_cannot_be_given_the_context() -> None:
    @tool(parameters={"type": "object"})  # admits any argument
    def loose(ctx: RequestContext) -> str:
        return str(ctx.client)

    result = await ToolRunner(Registry.of(loose), 5).run(
        ToolCall("c1", "loose", json.dumps({"ctx": "admin"}))
    )
    assert not result.ok and "unexpected argument" in result.output


async def test_outside_a_request_the_context_is_empty() -> None:
    result = await ToolRunner(Registry.of(whoami), 5).run(
        ToolCall("c1", "whoami", '{"greeting": "Hi"}')
    )
    assert result.output == "Hi, None"
    assert seen == [RequestContext()]


def test_each_tool_gets_only_the_headers_it_chose() -> None:
    caller = Caller("r", "c", [(b"x-user-id", b"a"), (b"x-user-id", b"b"), (b"x-tenant", b"t")])
    assert caller.context(whoami.context_headers).headers == {"x-user-id": "a, b"}
    assert caller.context(whoami_async.context_headers).headers == {
        "x-user-id": "a, b",
        "x-tenant": "t",
    }


def test_an_optional_context_parameter_is_the_context_too() -> None:
    @tool
    def f(x: int, ctx: RequestContext | None = None) -> int:
        return x

    assert f.context_parameter == "ctx"
    assert set(f.parameters["properties"]) == {"x"}
    assert f.prepare({"x": 1})["ctx"] == RequestContext()


@pytest.mark.parametrize(
    ("headers", "words"),
    [
        (["authorization"], "without credentials"),
        (["X-API-Key"], "without credentials"),
        ("x-user-id", "must be a list"),
    ],
)
def test_credentials_are_never_a_tool_s_to_read(headers: Any, words: str) -> None:
    with pytest.raises(ToolDefinitionError, match=words):

        @tool(context_headers=headers)
        def f(ctx: RequestContext) -> str:
            return ""


def test_chosen_headers_need_a_context_parameter() -> None:
    with pytest.raises(ToolDefinitionError, match="takes no parameter typed RequestContext"):

        @tool(context_headers=["x-user-id"])
        def f(x: int) -> int:
            return x


def test_no_tool_can_reach_a_secret_header_through_the_caller() -> None:
    from proxy.tools.context import CALLER, calling

    headers = [(b"authorization", b"Bearer sk-secret"), (b"cookie", b"c=1"), (b"x-user-id", b"u")]
    token = calling("r-1", "team-a", headers)
    try:
        caller = CALLER.get()
        assert caller is not None and list(caller.headers) == [(b"x-user-id", b"u")]
    finally:
        CALLER.reset(token)
    assert CALLER.get() is None
