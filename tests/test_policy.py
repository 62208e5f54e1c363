"""Per-key tool policy: a `[clients.NAME]` key's allow-list, and the `X-Tool-Proxy-Tools`
header narrowing one request — through the app with the real `openai` client, checked by what
the loopback upstream received."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx2
import openai
import pytest

from proxy import tool
from proxy.app import create_app
from proxy.config import Client, ConfigError, Settings
from proxy.tools.registry import Registry
from tests.chunks import calls_round, text_round
from tests.conftest import SERVER_TOOLS, mocked_app, openai_client
from tests.events import body_round
from tests.upstream import ScriptedUpstream

ALL = ["weather", "GetWeatherArgs", "get_stock_price"]
TEAM_A = Client("team-a", "sk-team-a", ("weather",))
TEAM_B = Client("team-b", "sk-team-b")  # every tool
KEYS = {"clients": (TEAM_A, TEAM_B), "api_keys": ("sk-plain",), "upstream_api_key": "sk-up"}
USER = [{"role": "user", "content": "hi"}]


def client_with(key: str, **settings: Any) -> openai.AsyncOpenAI:
    return openai_client(mocked_app(**{**KEYS, **settings})).with_options(api_key=key)


def chat_tools(request: dict[str, Any]) -> list[str]:
    return [spec["function"]["name"] for spec in request.get("tools", [])]


def responses_tools(request: dict[str, Any]) -> list[str]:
    return [spec["name"] for spec in request.get("tools", [])]


async def chat(client: openai.AsyncOpenAI, header: str | None = None) -> str:
    extra = {} if header is None else {"X-Tool-Proxy-Tools": header}
    stream = await client.chat.completions.create(
        model="m", messages=USER, stream=True, extra_headers=extra
    )
    return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])


@pytest.mark.parametrize(
    ("key", "expected"),
    [("sk-team-a", ["weather"]), ("sk-team-b", ALL), ("sk-plain", ALL)],
)
async def test_a_key_gets_only_the_tools_it_may_use(
    upstream: Callable[..., ScriptedUpstream], key: str, expected: list[str]
) -> None:
    up = upstream(text_round("ok"))
    assert await chat(client_with(key)) == "ok"
    assert chat_tools(up.requests[0]) == expected


async def test_a_key_limited_to_one_tool_never_sees_the_others_on_responses(
    upstream: Callable[..., ScriptedUpstream],
) -> None:
    up = upstream(body_round("resp_1", {"type": "message", "role": "assistant", "content": []}))
    await client_with("sk-team-a").responses.create(model="m", input="hi")
    assert responses_tools(up.requests[0]) == ["weather"]


async def test_a_call_to_a_tool_the_key_may_not_use_is_never_run(
    upstream: Callable[..., ScriptedUpstream],
) -> None:
    """The model names a tool it was not given: it is the client's to answer, like any tool
    the proxy does not run."""
    up = upstream(calls_round(("c1", "get_stock_price", '{"ticker": "X"}')))
    stream = await client_with("sk-team-a").chat.completions.create(
        model="m", messages=USER, stream=True
    )
    chunks = [c async for c in stream if c.choices]
    calls = [call for c in chunks for call in c.choices[0].delta.tool_calls or ()]
    assert calls[0].function.name == "get_stock_price"
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert len(up.requests) == 1  # no round with a result of it


async def test_none_sends_the_request_upstream_without_server_tools(
    upstream: Callable[..., ScriptedUpstream],
) -> None:
    up = upstream(text_round("plain"))
    assert await chat(client_with("sk-team-b"), "none") == "plain"
    assert up.requests[0] == {"model": "m", "messages": USER, "stream": True}
    assert "x-tool-proxy-tools" not in up.headers[0]


async def test_none_on_responses(upstream: Callable[..., ScriptedUpstream]) -> None:
    up = upstream(body_round("resp_1", {"type": "message", "role": "assistant", "content": []}))
    await client_with("sk-plain").responses.create(
        model="m", input="hi", extra_headers={"X-Tool-Proxy-Tools": "NONE"}
    )
    assert up.requests[0] == {"model": "m", "input": "hi"}
    assert "x-tool-proxy-tools" not in up.headers[0]


@pytest.mark.parametrize(
    ("key", "header", "expected"),
    [
        ("sk-team-b", "get_stock_price, GetWeatherArgs", ["GetWeatherArgs", "get_stock_price"]),
        ("sk-team-b", "weather,unknown", ["weather"]),  # unknown names are ignored
        ("sk-team-a", "weather,get_stock_price", ["weather"]),  # never wider than the key
        ("sk-team-a", "get_stock_price", []),  # nothing the key allows: no server tool
        ("sk-team-a", " , ", ["weather"]),  # an empty list narrows nothing
        ("sk-team-b", "weather, None", []),  # `none` wins over any name beside it
    ],
)
async def test_the_header_narrows_within_what_the_key_allows(
    upstream: Callable[..., ScriptedUpstream], key: str, header: str, expected: list[str]
) -> None:
    up = upstream(text_round("ok"))
    await chat(client_with(key), header)
    assert chat_tools(up.requests[0]) == expected
    assert "x-tool-proxy-tools" not in up.headers[0]


async def test_the_header_narrows_without_client_keys(
    upstream: Callable[..., ScriptedUpstream],
) -> None:
    up = upstream(text_round("ok"))
    await chat(openai_client(mocked_app()), "get_stock_price")
    assert chat_tools(up.requests[0]) == ["get_stock_price"]


async def test_the_header_never_reaches_the_upstream_of_other_paths(
    upstream: Callable[..., ScriptedUpstream],
) -> None:
    up = upstream(text_round("unused"))
    app = mocked_app(**KEYS)
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://proxy.test") as http:
        await http.get(
            "/v1/models",
            headers={"authorization": "Bearer sk-team-a", "x-tool-proxy-tools": "none"},
        )
    assert up.paths == ["GET /v1/models?"]
    assert "x-tool-proxy-tools" not in up.headers[0]


async def test_a_client_key_is_refused_when_wrong(
    upstream: Callable[..., ScriptedUpstream],
) -> None:
    upstream(text_round("unused"))
    with pytest.raises(openai.AuthenticationError) as caught:
        await chat(client_with("sk-team-c"))
    assert "[clients.NAME]" in str(caught.value)


def test_an_allow_list_naming_an_unknown_tool_stops_the_start() -> None:
    typo = Client("team-a", "sk-team-a", ("weather", "wether"))
    settings = Settings(clients=(typo,), upstream_api_key="sk-up")
    with pytest.raises(ConfigError, match=r"clients\.team-a may use tool\(s\) 'wether'") as caught:
        create_app(settings, SERVER_TOOLS)
    assert "'weather'" not in str(caught.value).split("registered")[0]  # only the unknown one
    assert "sk-team-a" not in str(caught.value)


async def test_none_means_no_tool_even_one_named_none(
    upstream: Callable[..., ScriptedUpstream],
) -> None:
    @tool(name="none")
    def nothing() -> str:
        """Does nothing."""
        return ""

    up = upstream(text_round("ok"))
    app = mocked_app(Registry.of(nothing, *(e.tool for e in SERVER_TOOLS.values())))
    await chat(openai_client(app), "none")
    assert "tools" not in up.requests[0]
