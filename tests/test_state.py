"""Conversation state across requests and replicas, live: two proxies on one real Redis behind
one real upstream, the real `openai` client. A turn whose model calls a server tool and the
client's own tool at once (a mixed round) goes to one proxy; the client's follow-up to the
other — and the upstream must see the whole history, the hidden call and its result included."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from proxy import tool
from proxy.app import create_app
from proxy.config import Settings
from proxy.tools.registry import Registry
from tests.chunks import calls_round, completion, text_round
from tests.events import body_round, call_events, message_events, stream_round
from tests.processes import clean_env, spawn, stop, wait_healthy
from tests.redis_server import RedisServer, redis_server, redis_url  # noqa: F401 - fixtures
from tests.servers import free_port, serve, upstream_app
from tests.upstream import ScriptedUpstream


@tool
def weather(city: str) -> str:
    """Weather in a city."""
    return f"Sunny in {city}"


TOOLS = Registry.of(weather, plugin="state")
PICK = {"name": "pick_color", "parameters": {"type": "object", "properties": {}}}
USER = {"role": "user", "content": "Weather in Oslo, and pick a colour."}


@contextmanager
def replicas(script: ScriptedUpstream, store: str, count: int = 2) -> Iterator[list[str]]:
    """`count` proxies sharing `store`, in front of `script`; their /v1 URLs."""
    with ExitStack() as stack:
        upstream_url = stack.enter_context(serve(upstream_app(script)))
        settings = Settings(upstream=upstream_url + "/v1", store=store)
        yield [
            stack.enter_context(serve(create_app(settings, TOOLS))) + "/v1" for _ in range(count)
        ]


def client(url: str, key: str = "sk-alice") -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=url, max_retries=0)


def mixed_chat_round() -> Any:
    return calls_round(("call_s", "weather", '{"city": "Oslo"}'), ("call_c", "pick_color", "{}"))


def first_chat_turn(url: str) -> dict[str, Any]:
    """The client's first turn: it sees its own call only; the assistant message it keeps."""
    stream = client(url).chat.completions.create(
        model="m", messages=[USER], tools=[{"type": "function", "function": PICK}], stream=True
    )
    calls: dict[int, dict[str, Any]] = {}
    finish = None
    for chunk in stream:
        for delta in chunk.choices[0].delta.tool_calls or [] if chunk.choices else []:
            entry = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            entry["id"] += delta.id or ""
            entry["name"] += delta.function.name or "" if delta.function else ""
            entry["arguments"] += delta.function.arguments or "" if delta.function else ""
        if chunk.choices and chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
    assert finish == "tool_calls"
    assert [c["name"] for c in calls.values()] == ["pick_color"]
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": c["id"], "type": "function", "function": function(c)} for c in calls.values()
        ],
    }


def function(call: dict[str, Any]) -> dict[str, Any]:
    return {"name": call["name"], "arguments": call["arguments"]}


def chat_follow_up(url: str, assistant: dict[str, Any], key: str = "sk-alice") -> str:
    answer = {"role": "tool", "tool_call_id": "call_c", "content": "blue"}
    completion = client(url, key).chat.completions.create(
        model="m",
        messages=[USER, assistant, answer],
        tools=[{"type": "function", "function": PICK}],
    )
    return completion.choices[0].message.content or ""


def final_answer() -> Any:
    return completion({"role": "assistant", "content": "Sunny in Oslo, and blue."}, id="c-9")


def assert_whole_history(request: dict[str, Any]) -> None:
    """The follow-up as the upstream got it: the hidden call back in its place."""
    user, assistant, *results = request["messages"]
    assert user == USER
    assert [c["id"] for c in assistant["tool_calls"]] == ["call_s", "call_c"]
    assert assistant["tool_calls"][0]["function"] == {
        "name": "weather",
        "arguments": '{"city": "Oslo"}',
    }
    assert [(r["role"], r["tool_call_id"], r["content"]) for r in results] == [
        ("tool", "call_s", "Sunny in Oslo"),
        ("tool", "call_c", "blue"),
    ]


def test_a_chat_mixed_round_is_whole_again_on_one_proxy() -> None:
    script = ScriptedUpstream(mixed_chat_round(), final_answer())
    with replicas(script, "memory", count=1) as (url,):
        assistant = first_chat_turn(url)
        assert chat_follow_up(url, assistant) == "Sunny in Oslo, and blue."
    assert_whole_history(script.requests[1])


def test_a_chat_follow_up_on_another_replica_is_whole_with_redis(redis_url: str) -> None:  # noqa: F811
    script = ScriptedUpstream(mixed_chat_round(), final_answer())
    with replicas(script, redis_url) as (first, second):
        assistant = first_chat_turn(first)
        assert chat_follow_up(second, assistant) == "Sunny in Oslo, and blue."
    assert_whole_history(script.requests[1])


def test_another_clients_follow_up_goes_as_it_was_sent(redis_url: str) -> None:  # noqa: F811
    script = ScriptedUpstream(mixed_chat_round(), final_answer())
    with replicas(script, redis_url) as (first, second):
        assistant = first_chat_turn(first)
        chat_follow_up(second, assistant, key="sk-mallory")
    sent = script.requests[1]["messages"]
    assert [c["id"] for c in sent[1]["tool_calls"]] == ["call_c"]
    assert [m["tool_call_id"] for m in sent[2:]] == ["call_c"]


def mixed_responses_round() -> Any:
    return stream_round(
        "resp_1",
        call_events(0, "call_s", "weather", '{"city": "Oslo"}'),
        call_events(1, "call_c", "pick_color", "{}"),
    )


def first_responses_turn(url: str) -> Any:
    pick = {"type": "function", **PICK}
    with client(url).responses.stream(model="m", input=[USER], tools=[pick]) as stream:
        final = stream.get_final_response()
    assert [(i.type, i.call_id) for i in final.output] == [("function_call", "call_c")]
    return final


def test_a_responses_follow_up_by_previous_response_id_on_another_replica(
    redis_url: str,  # noqa: F811
) -> None:
    script = ScriptedUpstream(
        mixed_responses_round(), stream_round("resp_2", message_events(0, "Sunny, and blue."))
    )
    with replicas(script, redis_url) as (first, second):
        final = first_responses_turn(first)
        answer = {"type": "function_call_output", "call_id": "call_c", "output": "blue"}
        with client(second).responses.stream(
            model="m", input=[answer], previous_response_id=final.id
        ) as stream:
            assert stream.get_final_response().output_text == "Sunny, and blue."
    sent = script.requests[1]
    assert sent["previous_response_id"] == "resp_1"
    assert [(i["call_id"], i["output"]) for i in sent["input"]] == [
        ("call_s", "Sunny in Oslo"),
        ("call_c", "blue"),
    ]


def test_a_responses_replay_without_ids_on_another_replica(redis_url: str) -> None:  # noqa: F811
    """The Vercel AI SDK's follow-up: the client's call again without its `id`, no
    `previous_response_id`, no `store` — recognised by its `call_id`."""
    answer = body_round("resp_2", message_events(0, "Sunny, and blue.")[1])
    script = ScriptedUpstream(mixed_responses_round(), answer)
    with replicas(script, redis_url) as (first, second):
        first_responses_turn(first)
        replay = [
            USER,
            {"type": "function_call", "call_id": "call_c", "name": "pick_color", "arguments": ""},
            {"type": "function_call_output", "call_id": "call_c", "output": "blue"},
        ]
        http = httpx.post(
            second + "/responses",
            json={"model": "m", "input": replay, "stream": False},
            headers={"authorization": "Bearer sk-alice"},
        )
        assert http.status_code == 200, http.text
    sent = script.requests[1]["input"]
    assert [(i.get("type"), i.get("call_id")) for i in sent] == [
        (None, None),
        ("function_call", "call_s"),
        ("function_call_output", "call_s"),
        ("function_call", "call_c"),
        ("function_call_output", "call_c"),
    ]
    assert sent[2]["output"] == "Sunny in Oslo"
    assert json.loads(sent[1]["arguments"]) == {"city": "Oslo"}


def test_an_unreachable_store_is_a_503_for_the_request_that_needs_it() -> None:
    script = ScriptedUpstream(mixed_chat_round(), text_round("Plain answer."))
    with replicas(script, f"redis://127.0.0.1:{free_port()}/0", count=1) as (url,):
        assistant = first_chat_turn(url)  # the answer goes out; only keeping it failed
        with pytest.raises(openai.APIStatusError) as caught:
            chat_follow_up(url, assistant)
        plain = client(url).chat.completions.create(model="m", messages=[USER], stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in plain if c.choices)
        readiness = httpx.get(url.removesuffix("/v1") + "/health/readiness")
    assert caught.value.status_code == 503
    assert caught.value.body["code"] == "store_unavailable"
    assert readiness.status_code == 503
    assert readiness.json() == {"status": "store_unavailable"}  # where it is stays in the log
    assert len(script.requests) == 2  # the follow-up never went upstream half-remembered


def test_a_redis_that_comes_back_is_used_again(
    redis_server: RedisServer,  # noqa: F811
) -> None:
    script = ScriptedUpstream(mixed_chat_round(), mixed_chat_round(), final_answer())
    with replicas(script, redis_server.url, count=1) as (url,):
        with redis_server.down():
            lost = first_chat_turn(url)  # kept nowhere: Redis is down
            with pytest.raises(openai.APIStatusError) as caught:
                chat_follow_up(url, lost)
            assert caught.value.status_code == 503
        assistant = first_chat_turn(url)
        assert chat_follow_up(url, assistant) == "Sunny in Oslo, and blue."
    assert_whole_history(script.requests[2])


def test_two_proxy_processes_on_one_redis(redis_url: str, tmp_path: Path) -> None:  # noqa: F811
    """The same, with each replica its own `openai-tool-proxy serve` process."""
    script = ScriptedUpstream(mixed_chat_round(), final_answer())
    with serve(upstream_app(script)) as upstream_url:
        ports = [free_port(), free_port()]
        env = clean_env(
            TOOL_PROXY_STORE=redis_url,
            TOOL_PROXY_UPSTREAM=upstream_url + "/v1",
            TOOL_PROXY_PLUGINS="calculator",
        )
        procs = [spawn(["serve", "--port", str(port)], env, tmp_path) for port in ports]
        try:
            for proc, port in zip(procs, ports, strict=True):
                wait_healthy(proc, f"http://127.0.0.1:{port}/health/readiness")
            first, second = (f"http://127.0.0.1:{port}/v1" for port in ports)
            # `calculate` is the server tool here: the model calls it beside the client's.
            script.replies[0] = calls_round(
                ("call_s", "calculate", '{"expression": "6*7"}'), ("call_c", "pick_color", "{}")
            )
            assistant = first_chat_turn(first)
            assert chat_follow_up(second, assistant) == "Sunny in Oslo, and blue."
        finally:
            for proc in procs:
                stop(proc)
    _, assistant_sent, *results = script.requests[1]["messages"]
    assert [c["id"] for c in assistant_sent["tool_calls"]] == ["call_s", "call_c"]
    assert [(r["tool_call_id"], r["content"]) for r in results] == [
        ("call_s", "42"),
        ("call_c", "blue"),
    ]


def test_a_state_that_cannot_be_kept_still_leaves_the_answer_whole(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(self: Any, items: Any) -> None:
        raise RuntimeError("the store broke in an unforeseen way")

    monkeypatch.setattr("proxy.store.memory.MemoryStore.put_many", broken)
    script = ScriptedUpstream(mixed_chat_round())
    with replicas(script, "memory", count=1) as (url,):
        first_chat_turn(url)  # ends with its finish and [DONE], whatever the store did
    assert "conversation state was not kept" in caplog.text
