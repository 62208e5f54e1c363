"""The round loop over Chat Completions, as the real `openai` client sees it (DESIGN §2)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import openai
import pytest

from proxy import tool
from proxy.tools.registry import Registry
from tests.chunks import call, calls_round, chunk, completion, text_round, usage
from tests.conftest import REFUSED, raw_client, weather
from tests.upstream import Reply, sse, sse_frames

USER = [{"role": "user", "content": "hi"}]
LOOKUP = {
    "type": "function",
    "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
}


async def stream_all(client: openai.AsyncOpenAI, **request: Any) -> list[Any]:
    stream = await client.chat.completions.create(
        model="m", messages=request.pop("messages", USER), stream=True, **request
    )
    return [c async for c in stream]


def content_of(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


async def test_usage_is_summed_and_sent_only_when_asked(upstream, client):
    upstream(
        calls_round(("c1", "weather", '{"location": "Oslo"}'), usage=usage(10, 5)),
        Reply(
            sse(
                chunk({"role": "assistant", "content": "Sunny"}, id="chatcmpl-2"),
                chunk(finish="stop", id="chatcmpl-2"),
                {
                    "id": "chatcmpl-2",
                    "object": "chat.completion.chunk",
                    "created": 1,
                    "model": "m",
                    "choices": [],
                    "usage": usage(20, 7),
                },
            )
        ),
    )
    chunks = await stream_all(client, stream_options={"include_usage": True})
    assert [c.usage.model_dump(exclude_none=True) for c in chunks if c.usage] == [
        {"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42}
    ]
    assert chunks[-1].choices == [] and chunks[-1].id == "chatcmpl-1"

    upstream(
        calls_round(("c1", "weather", '{"location": "Oslo"}'), usage=usage(10, 5)),
        text_round("Sunny", usage=usage(20, 7)),
    )
    chunks = await stream_all(client)
    assert not any(c.usage for c in chunks)
    assert content_of(chunks) == "Sunny"


@pytest.mark.parametrize(
    "forced", ["required", {"type": "function", "function": {"name": "weather"}}]
)
async def test_forced_tool_choice_holds_for_the_first_round_only(upstream, client, forced):
    up = upstream(calls_round(("c1", "weather", "{}")), text_round("Done"))
    chunks = await stream_all(client, tool_choice=forced)
    assert content_of(chunks) == "Done"
    assert [r["tool_choice"] for r in up.requests] == [forced, "auto"]


async def test_the_last_round_allows_no_tool(upstream, make_client):
    client = make_client(max_rounds=3)
    up = upstream(
        calls_round(("c1", "weather", '{"location": "a"}')),
        calls_round(("c2", "weather", '{"location": "b"}')),
        text_round("Enough"),
    )
    chunks = await stream_all(client)
    assert content_of(chunks) == "Enough"
    assert [r.get("tool_choice") for r in up.requests] == [None, None, "none"]


async def test_a_model_that_ignores_the_limit_still_gets_an_answer_out(upstream, make_client):
    client = make_client(max_rounds=2)
    up = upstream(
        calls_round(("c1", "weather", '{"location": "a"}')),
        calls_round(("c2", "weather", '{"location": "b"}')),
    )
    chunks = await stream_all(client)
    assert len(up.requests) == 2
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert not any(c.choices[0].delta.tool_calls for c in chunks if c.choices)


async def test_repeated_identical_calls_end_the_loop_early(upstream, client):
    up = upstream(
        calls_round(("c1", "weather", '{"location": "a"}')),
        calls_round(("c2", "weather", '{"location": "a"}')),
        text_round("It is sunny"),
    )
    await stream_all(client)
    assert [r.get("tool_choice") for r in up.requests] == [None, None, "none"]


async def test_mixed_round_runs_server_calls_and_forwards_client_calls(upstream, make_client):
    ran: list[str] = []

    @tool
    def weather(location: str) -> str:
        """Weather."""
        ran.append(location)
        return "sunny"

    client = make_client(Registry.of(weather))
    up = upstream(
        calls_round(("c1", "weather", '{"location": "Oslo"}'), ("c2", "lookup", '{"q": 1}'))
    )
    chunks = await stream_all(client, tools=[LOOKUP])
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert [(tc.index, tc.id, tc.function.name) for tc in calls if tc.id] == [(0, "c2", "lookup")]
    assert "".join(tc.function.arguments for tc in calls) == '{"q": 1}'
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert ran == ["Oslo"] and len(up.requests) == 1


async def test_a_client_tool_with_a_server_tools_name_wins(upstream, client):
    mine = {"type": "function", "function": {"name": "weather", "description": "mine"}}
    up = upstream(calls_round(("c1", "weather", "{}")))
    chunks = await stream_all(client, tools=[mine])
    names = [t["function"]["name"] for t in up.requests[0]["tools"]]
    assert names.count("weather") == 1 and up.requests[0]["tools"][0] == mine
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert calls[0].function.name == "weather"


async def test_failing_tools_become_results_the_model_reads(upstream, make_client):
    @tool
    def typed(n: int) -> int:
        """Typed."""
        return n

    @tool
    def boom() -> str:
        """Boom."""
        raise RuntimeError("the database is down")

    @tool(timeout=0.05)
    async def slow() -> str:
        """Slow."""
        await asyncio.sleep(5)
        return "late"

    client = make_client(Registry.of(typed, boom, slow))
    up = upstream(
        calls_round(
            ("a", "typed", '{"n": "x"}'),
            ("b", "boom", ""),
            ("c", "slow", "{}"),
            ("d", "typed", "{not json"),
        ),
        text_round("Sorry"),
    )
    assert content_of(await stream_all(client)) == "Sorry"
    results = {m["tool_call_id"]: m["content"] for m in up.requests[1]["messages"][2:]}
    assert results["a"].startswith("error: invalid arguments for 'typed'") and '"x"' in results["a"]
    assert results["b"] == "error: 'boom' failed: RuntimeError: the database is down"
    assert results["c"] == "error: 'slow' timed out after 0.05 seconds"
    assert "not valid JSON" in results["d"]


async def test_server_calls_run_concurrently(upstream, make_client):
    """Each call waits until all three have started: run one after another, the first would
    time out waiting for the others."""
    arrived = 0
    everyone = asyncio.Event()

    @tool(timeout=1)
    async def meet(n: int) -> int:
        """Meet the others."""
        nonlocal arrived
        arrived += 1
        if arrived == 3:
            everyone.set()
        await everyone.wait()
        return n

    client = make_client(Registry.of(meet))
    up = upstream(
        calls_round(
            ("a", "meet", '{"n": 1}'), ("b", "meet", '{"n": 2}'), ("c", "meet", '{"n": 3}')
        ),
        text_round("ok"),
    )
    await stream_all(client)
    results = [m["content"] for m in up.requests[1]["messages"][-3:]]
    assert results == ["1", "2", "3"]


async def test_every_field_of_the_assistant_message_goes_to_the_next_round(upstream, client):
    first = Reply(
        sse(
            chunk({"role": "assistant", "content": "Let me check. ", "reasoning_content": "Hm"}),
            chunk({"reasoning_content": "m.", "custom_field": {"k": 1}}),
            chunk(
                {
                    "tool_calls": [
                        {
                            **call(0, "c1", "weather", '{"location"'),
                            "extra_content": {"google": {"thought_signature": "s"}},
                        }
                    ]
                }
            ),
            chunk({"tool_calls": [call(0, None, None, ': "Oslo"}')]}),
            chunk(finish="tool_calls"),
        )
    )
    up = upstream(first, text_round("Sunny."))
    chunks = await stream_all(client, temperature=0.3, metadata={"x": "y"}, user="u1")
    assert content_of(chunks) == "Let me check. Sunny."
    assistant = up.requests[1]["messages"][1]
    assert assistant == {
        "role": "assistant",
        "content": "Let me check. ",
        "reasoning_content": "Hmm.",
        "custom_field": {"k": 1},
        "tool_calls": [
            {
                "extra_content": {"google": {"thought_signature": "s"}},
                "id": "c1",
                "type": "function",
                "function": {"name": "weather", "arguments": '{"location": "Oslo"}'},
            }
        ],
    }
    for request in up.requests:
        assert (request["temperature"], request["metadata"], request["user"]) == (
            0.3,
            {"x": "y"},
            "u1",
        )


async def test_legacy_functions_stream(upstream, client):
    up = upstream(
        Reply(
            sse(
                chunk(
                    {
                        "role": "assistant",
                        "content": None,
                        "function_call": {"name": "weather", "arguments": ""},
                    }
                ),
                chunk({"function_call": {"arguments": '{"location": "Rome"}'}}),
                chunk(finish="function_call"),
            )
        ),
        text_round("Warm in Rome"),
    )
    lookup = {"name": "lookup", "parameters": {"type": "object", "properties": {}}}
    chunks = await stream_all(client, functions=[lookup])
    assert content_of(chunks) == "Warm in Rome"
    assert not any(c.choices[0].delta.function_call for c in chunks if c.choices)
    assert "tools" not in up.requests[0]
    assert [f["name"] for f in up.requests[0]["functions"]] == [
        "lookup",
        "weather",
        "GetWeatherArgs",
        "get_stock_price",
    ]
    history = up.requests[1]["messages"][1:]
    assert history[0]["function_call"] == {"name": "weather", "arguments": '{"location": "Rome"}'}
    assert history[1] == {
        "role": "function",
        "name": "weather",
        "content": weather(location="Rome"),
    }


async def test_legacy_client_function_call_is_forwarded(upstream, client):
    upstream(
        Reply(
            sse(
                chunk(
                    {
                        "role": "assistant",
                        "content": None,
                        "function_call": {"name": "lookup", "arguments": ""},
                    }
                ),
                chunk({"function_call": {"arguments": '{"q": 1}'}}),
                chunk(finish="function_call"),
            )
        )
    )
    lookup = {"name": "lookup", "parameters": {"type": "object", "properties": {}}}
    chunks = await stream_all(client, functions=[lookup])
    deltas = [c.choices[0].delta.function_call for c in chunks if c.choices]
    assert [d.name for d in deltas if d and d.name] == ["lookup"]
    assert "".join(d.arguments or "" for d in deltas if d) == '{"q": 1}'
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "function_call"


async def test_non_streaming_runs_the_same_loop(upstream, client):
    up = upstream(
        completion(
            {
                "role": "assistant",
                "content": "Checking. ",
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"location":"Oslo"}'},
                    }
                ],
            },
            finish="tool_calls",
            usage=usage(10, 5),
        ),
        completion({"role": "assistant", "content": "Sunny."}, id="chatcmpl-2", usage=usage(20, 7)),
    )
    result = await client.chat.completions.create(model="m", messages=USER)
    assert result.id == "chatcmpl-1"
    assert result.choices[0].message.content == "Checking. Sunny."
    assert result.choices[0].message.tool_calls is None
    assert result.choices[0].finish_reason == "stop"
    assert (result.usage.prompt_tokens, result.usage.total_tokens) == (30, 42)
    assert up.requests[1]["messages"][2]["content"] == weather(location="Oslo")


async def test_non_streaming_mixed_round_returns_only_client_calls(upstream, client):
    upstream(
        completion(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": "{}"},
                    },
                    {
                        "id": "c2",
                        "type": "function",
                        "function": {"name": "lookup", "arguments": '{"q": 1}'},
                    },
                ],
            },
            finish="tool_calls",
        )
    )
    result = await client.chat.completions.create(model="m", messages=USER, tools=[LOOKUP])
    assert [c.id for c in result.choices[0].message.tool_calls] == ["c2"]
    assert result.choices[0].finish_reason == "tool_calls"


async def test_an_upstream_error_before_any_byte_keeps_its_status_and_body(upstream, client):
    body = {
        "error": {
            "message": "Rate limit reached",
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }
    upstream(
        Reply(
            json.dumps(body).encode(),
            status=429,
            content_type="application/json",
            headers={"retry-after": "7"},
        )
    )
    with pytest.raises(openai.RateLimitError) as caught:
        await stream_all(client)
    assert caught.value.status_code == 429
    assert caught.value.body == body["error"]
    assert caught.value.response.headers["retry-after"] == "7"


async def test_an_upstream_error_after_streaming_began_is_an_error_event(upstream):
    upstream(
        Reply(
            sse(
                chunk({"role": "assistant", "content": "Checking. "}),
                chunk({"tool_calls": [call(0, "c1", "weather", "{}")]}),
                chunk(finish="tool_calls"),
            )
        ),
        Reply(
            b'{"error": {"message": "overloaded", "type": "server_error"}}',
            status=503,
            content_type="application/json",
        ),
    )
    async with raw_client() as http:
        response = await http.post(
            "/v1/chat/completions", json={"model": "m", "messages": USER, "stream": True}
        )
    frames = sse_frames(response.text)
    assert response.status_code == 200
    assert json.loads(frames[-1].removeprefix("data: ")) == {
        "error": {
            "message": "overloaded",
            "type": "server_error",
            "param": None,
            "code": "upstream_error",
        }
    }
    assert "[DONE]" not in response.text
    assert "Checking. " in frames[0]


async def test_an_error_event_from_upstream_reaches_the_client_and_ends_the_stream(
    upstream, client
):
    upstream(
        Reply(
            sse(
                chunk({"role": "assistant", "content": "Hel"}),
                {"error": {"message": "The server had an error", "type": "server_error"}},
                chunk({"content": "lo"}),
            )
        )
    )
    chunks: list[Any] = []
    with pytest.raises(openai.APIError, match="The server had an error"):
        stream = await client.chat.completions.create(model="m", messages=USER, stream=True)
        async for c in stream:
            chunks.append(c)
    assert content_of(chunks) == "Hel"


async def test_an_unreachable_upstream_is_a_502(make_client):
    with pytest.raises(openai.APIStatusError) as caught:
        await stream_all(make_client(upstream=REFUSED))
    assert caught.value.status_code == 502
    assert caught.value.body["code"] == "upstream_unreachable"
    assert caught.value.body["type"] == "server_error"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "could not parse the JSON body"),
        (b"[1, 2]", "Invalid type for the request body: expected an object"),
        (b'{"model": "m"}', "Missing required parameter: 'messages'."),
        (
            b'{"model": "m", "messages": [], "tools": {}}',
            "Invalid type for 'tools': expected an array of objects",
        ),
    ],
)
async def test_bad_request_bodies_are_400s_in_the_openai_format(body, message):
    async with raw_client() as http:
        response = await http.post("/v1/chat/completions", content=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert message in error["message"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"


async def test_headers_go_upstream_except_hop_by_hop_ones(upstream, served_upstream):
    up = upstream(text_round("hi", id="chatcmpl-1"))
    async with raw_client() as http:
        await http.post(
            "/v1/chat/completions",
            json={"model": "m", "messages": USER, "stream": True},
            headers={
                "authorization": "Bearer sk-client",
                "openai-organization": "org-1",
                "connection": "keep-alive, x-hop",
                "x-hop": "1",
                "x-custom": "2",
            },
        )
    sent = up.headers[0]
    assert sent["authorization"] == "Bearer sk-client"
    assert (sent["openai-organization"], sent["x-custom"]) == ("org-1", "2")
    assert "x-hop" not in sent and sent["host"] == httpx.URL(served_upstream.url).netloc.decode()
    names = [name.lower() for name, _ in up.raw_headers[0]]
    assert sorted(names) == sorted(set(names))  # the proxy's own host and length, once each


async def test_the_proxys_upstream_key_replaces_the_clients(upstream):
    up = upstream(completion({"role": "assistant", "content": "hi"}))
    async with raw_client(upstream_api_key="sk-proxy") as http:
        await http.post(
            "/v1/chat/completions",
            json={"model": "m", "messages": USER},
            headers={"authorization": "Bearer sk-client"},
        )
    assert up.headers[0]["authorization"] == "Bearer sk-proxy"


async def test_several_choices_pass_through_untouched(upstream):
    body = sse(chunk({"role": "assistant", "content": "a"}), chunk(finish="stop"))
    up = upstream(Reply(body))
    request = {"model": "m", "messages": USER, "stream": True, "n": 2}
    async with raw_client() as http:
        response = await http.post("/v1/chat/completions", json=request)
    assert response.content == body
    assert up.requests[0] == request


async def test_client_keys_are_enforced_when_configured(upstream):
    up = upstream(completion({"role": "assistant", "content": "hi"}))
    async with raw_client(api_keys=("k1", "k2"), upstream_api_key="sk-up") as http:
        denied = await http.post(
            "/v1/chat/completions",
            json={"model": "m", "messages": USER},
            headers={"authorization": "Bearer nope"},
        )
        allowed = await http.post(
            "/v1/chat/completions",
            json={"model": "m", "messages": USER},
            headers={"authorization": "Bearer k2"},
        )
    assert denied.status_code == 401
    assert denied.json()["error"]["code"] == "invalid_api_key"
    assert allowed.status_code == 200
    assert up.headers[0]["authorization"] == "Bearer sk-up"  # the client's key stays here


async def test_only_the_first_authorization_header_is_read_as_the_key(upstream):
    """As the store reads it for the client's namespace: a second header with a valid key
    must not admit a request whose state would be kept under the first one's."""
    upstream(completion({"role": "assistant", "content": "hi"}))
    async with raw_client(api_keys=("k1",), upstream_api_key="sk-up") as http:
        two = [("authorization", "Bearer nope"), ("authorization", "Bearer k1")]
        denied = await http.post(
            "/v1/chat/completions", json={"model": "m", "messages": USER}, headers=two
        )
    assert denied.status_code == 401


async def test_a_body_ending_without_its_blank_line_loses_nothing(upstream, client):
    body = sse(chunk({"role": "assistant", "content": "a"}), done=False)
    upstream(
        Reply(
            body + b'data: {"id": "chatcmpl-1", "choices": [{"index": 0, '
            b'"delta": {"content": "b"}, "finish_reason": "stop"}]}'
        )
    )
    chunks = await stream_all(client)
    assert content_of(chunks) == "ab"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


async def test_a_stream_cut_short_is_an_error_not_a_fake_done(upstream):
    upstream(Reply(sse(chunk({"role": "assistant", "content": "Hel"}), done=False)))
    async with raw_client() as http:
        response = await http.post(
            "/v1/chat/completions", json={"model": "m", "messages": USER, "stream": True}
        )
    frames = sse_frames(response.text)
    assert "Hel" in frames[0]
    assert json.loads(frames[-1].removeprefix("data: "))["error"]["code"] == "upstream_incomplete"
    assert "[DONE]" not in response.text


async def test_an_empty_first_round_is_a_502(upstream):
    upstream(Reply(b""))
    async with raw_client() as http:
        response = await http.post(
            "/v1/chat/completions", json={"model": "m", "messages": USER, "stream": True}
        )
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_incomplete"


async def test_the_query_string_and_encoding_rules_reach_the_upstream(upstream):
    up = upstream(text_round("hi", id="chatcmpl-1"))
    async with raw_client() as http:
        await http.post(
            "/v1/chat/completions?api-version=2024-10-21",
            json={"model": "m", "messages": USER, "stream": True},
            headers={"accept-encoding": "br, zstd"},
        )
    assert up.headers[0]["accept-encoding"] == "identity"
    assert up.urls[0].endswith("/chat/completions?api-version=2024-10-21")


async def test_arguments_sent_as_an_object_still_run(upstream, client):
    up = upstream(
        Reply(
            sse(
                chunk(
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "c1",
                                "type": "function",
                                "function": {"name": "weather", "arguments": {"location": "Oslo"}},
                            }
                        ],
                    }
                ),
                chunk(finish="tool_calls"),
            )
        ),
        text_round("Sunny"),
    )
    assert content_of(await stream_all(client)) == "Sunny"
    assert up.requests[1]["messages"][-1]["content"] == weather(location="Oslo")


async def test_streamed_list_fields_are_merged_for_the_next_round(upstream, client):
    up = upstream(
        Reply(
            sse(
                chunk(
                    {
                        "role": "assistant",
                        "reasoning_details": [
                            {"type": "reasoning.text", "text": "Let me ", "index": 0}
                        ],
                    }
                ),
                chunk(
                    {
                        "reasoning_details": [
                            {"type": "reasoning.text", "text": "think.", "index": 0}
                        ]
                    }
                ),
                chunk(
                    {
                        "reasoning_details": [
                            {"type": "reasoning.text", "signature": "SIG", "index": 0}
                        ],
                        "tool_calls": [call(0, "c1", "weather", "{}")],
                    }
                ),
                chunk(finish="tool_calls"),
            )
        ),
        text_round("Sunny"),
    )
    await stream_all(client)
    assert up.requests[1]["messages"][1]["reasoning_details"] == [
        {"type": "reasoning.text", "text": "Let me think.", "index": 0, "signature": "SIG"}
    ]


async def test_an_allowed_tools_choice_keeps_its_list(upstream, client):
    choice = {
        "type": "allowed_tools",
        "allowed_tools": {
            "mode": "required",
            "tools": [{"type": "function", "function": {"name": "weather"}}],
        },
    }
    up = upstream(calls_round(("c1", "weather", "{}")), text_round("Done"))
    await stream_all(client, tool_choice=choice)
    assert up.requests[1]["tool_choice"] == {
        "type": "allowed_tools",
        "allowed_tools": {**choice["allowed_tools"], "mode": "auto"},
    }


async def test_the_proxys_own_time_is_reported(upstream):
    upstream(
        calls_round(("c1", "weather", "{}")),
        text_round("Sunny"),
        completion({"role": "assistant", "content": "hi"}),
    )
    async with raw_client() as http:
        streamed = await http.post(
            "/v1/chat/completions", json={"model": "m", "messages": USER, "stream": True}
        )
        whole = await http.post("/v1/chat/completions", json={"model": "m", "messages": USER})
    at_first_byte = float(streamed.headers["x-tool-proxy-overhead-ms"])
    last = streamed.text.rstrip("\n").rsplit("\n", 1)[-1]
    assert last.startswith(": x-tool-proxy-overhead-ms=")
    assert 0 < at_first_byte <= float(last.split("=")[1]) < 1000
    assert 0 < float(whole.headers["x-tool-proxy-overhead-ms"]) < 1000
