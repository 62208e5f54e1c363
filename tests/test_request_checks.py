"""Wrong JSON types never crash the proxy (issue 8 item 14).

Every field of both APIs' documented request schemas (the `openai` SDK's own parameter types)
is sent with every JSON type, streaming and not, through the app with an upstream that calls a
server tool and then answers — so each value is read through the whole loop. A field the
proxy reads answers OpenAI's 400 naming the `param` when its type is wrong, and goes through
when it is right; a field it does not read reaches the upstream untouched.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from copy import deepcopy
from typing import Any, get_type_hints

import httpx2
import pytest
import pytest_asyncio
from openai.types.chat.completion_create_params import CompletionCreateParamsBase
from openai.types.responses.response_create_params import ResponseCreateParamsBase

from proxy.app import create_app
from proxy.config import Settings
from proxy.responses.calls import SERVER_LABEL
from tests.chunks import calls_round, completion, text_round
from tests.conftest import SERVER_TOOLS, raw_client
from tests.events import body_round, call_events, message_events, stream_round
from tests.servers import loopback, serve
from tests.upstream import Reply, ScriptedUpstream, sse_frames

HOLE = "<the value under test>"

# One value of each JSON type, falsy and truthy, and arrays of each kind of entry.
VALUES: list[Any] = [
    None,
    False,
    True,
    0,
    1,
    1.5,
    "",
    "x",
    [],
    [1],
    ["x"],
    [None],
    [[]],
    [{}],
    {},
    {"x": 1},
]

MCP_CALL = {
    "type": "mcp_call",
    "id": "mcp_call_1",
    "server_label": SERVER_LABEL,
    "name": "weather",
    "arguments": "{}",
    "output": "Sunny",
}

# What the proxy reads, and the JSON types OpenAI allows there (an optional field may also be
# null): param -> (types, type of an array's entries, the request around the value).
Read = tuple[str, str | None, dict[str, Any] | None]


def TOOL_ANSWER(call_id: Any) -> dict[str, Any]:  # a template, like HOLE
    return {"role": "tool", "tool_call_id": call_id, "content": "x"}


def ASKED(calls: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": None, "tool_calls": calls}


CHAT_READS: dict[str, Read] = {
    "messages": ("array", "object", None),
    "tools": ("array", "object", None),
    "functions": ("array", "object", None),
    "tool_choice": ("string object", None, None),
    "function_call": ("string object", None, None),
    "stream": ("boolean", None, None),
    "stream_options": ("object", None, None),
    "n": ("integer", None, None),
    "stream_options.include_usage": ("boolean", None, {"stream_options": {"include_usage": HOLE}}),
    "tools[0].function": ("object", None, {"tools": [{"type": "function", "function": HOLE}]}),
    "tools[0].function.name": ("string", None, {"tools": [{"function": {"name": HOLE}}]}),
    "tools[0].name": ("string", None, {"tools": [{"type": "custom", "name": HOLE}]}),
    "functions[0].name": ("string", None, {"functions": [{"name": HOLE}]}),
    "tool_choice.type": ("string", None, {"tool_choice": {"type": HOLE}}),
    "tool_choice.allowed_tools": ("object", None, {"tool_choice": {"allowed_tools": HOLE}}),
    "function_call.type": ("string", None, {"function_call": {"type": HOLE}}),
    # The mixed-round memory reads roles and call ids (`proxy.chat.memory`).
    "messages[0].role": ("string", None, {"messages": [{"role": HOLE, "content": "x"}]}),
    "messages[0].tool_call_id": ("string", None, {"messages": [TOOL_ANSWER(HOLE)]}),
    "messages[0].tool_calls": ("array", "object", {"messages": [ASKED(HOLE), TOOL_ANSWER("c")]}),
    "messages[0].tool_calls[0].id": (
        "string",
        None,
        {"messages": [ASKED([{"id": HOLE, "type": "function"}]), TOOL_ANSWER("c")]},
    ),
}


def _in_mcp_call(**fields: Any) -> dict[str, Any]:
    return {"input": [{**MCP_CALL, **fields}]}


RESPONSES_READS: dict[str, Read] = {
    "input": ("string array", "object", None),
    "tools": ("array", "object", None),
    "tool_choice": ("string object", None, None),
    "stream": ("boolean", None, None),
    "store": ("boolean", None, None),
    "background": ("boolean", None, None),
    "conversation": ("string object", None, None),
    "include": ("array", "string", None),
    "previous_response_id": ("string", None, None),
    "input[0].type": ("string", None, {"input": [{"type": HOLE, "content": "hi"}]}),
    "input[0].id": ("string", None, {"input": [{"id": HOLE, "role": "user", "content": "hi"}]}),
    "input[0].call_id": ("string", None, {"input": [{"call_id": HOLE, "output": "x"}]}),
    "input[0].server_label": ("string", None, _in_mcp_call(server_label=HOLE)),
    "input[0].name": ("string", None, _in_mcp_call(name=HOLE)),
    "input[0].arguments": ("string", None, _in_mcp_call(arguments=HOLE)),
    "input[0].output": ("string", None, _in_mcp_call(output=HOLE)),
    "input[0].error": ("string object", None, _in_mcp_call(output=None, error=HOLE)),
    "input[0].error.content": (
        "array",
        "object",
        _in_mcp_call(output=None, error={"content": HOLE}),
    ),
    "input[0].error.content[0].text": (
        "string",
        None,
        _in_mcp_call(output=None, error={"content": [{"text": HOLE}]}),
    ),
    "input[0].error.message": ("string", None, _in_mcp_call(output=None, error={"message": HOLE})),
    "tools[0].name": ("string", None, {"tools": [{"type": "function", "name": HOLE}]}),
    "tool_choice.type": ("string", None, {"tool_choice": {"type": HOLE}}),
    "tool_choice.allowed_tools": ("object", None, {"tool_choice": {"allowed_tools": HOLE}}),
}


def documented(params: type) -> list[str]:
    """Every top-level field of a request, as the SDK declares it (`stream` is declared on
    the streaming variant)."""
    return sorted({*get_type_hints(params), "stream"})


CASES = [
    ("chat", param) for param in sorted({*documented(CompletionCreateParamsBase), *CHAT_READS})
] + [
    ("responses", param)
    for param in sorted({*documented(ResponseCreateParamsBase), *RESPONSES_READS})
]
PATHS = {"chat": "/v1/chat/completions", "responses": "/v1/responses"}
BASES: dict[str, dict[str, Any]] = {
    "chat": {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
    "responses": {"model": "m", "input": "hi"},
}
READS = {"chat": CHAT_READS, "responses": RESPONSES_READS}

_KINDS = {
    type(None): "null",
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
}


def refused_at(param: str, read: Read | None, value: Any) -> str | None:
    """The param a 400 must name for `value` at `param`, or None when it may go upstream."""
    if read is None or (value is None and param != "messages"):  # the one required field
        return None
    types, entries, _ = read
    if _KINDS[type(value)] not in types.split():
        return param
    if isinstance(value, list) and entries is not None:
        for index, entry in enumerate(value):
            if _KINDS[type(entry)] != entries:
                return f"{param}[{index}]"
    return None


def filled(template: Any, value: Any) -> Any:
    if template == HOLE:
        return value
    if isinstance(template, dict):
        return {key: filled(v, value) for key, v in template.items()}
    if isinstance(template, list):
        return [filled(v, value) for v in template]
    return template


def request(api: str, param: str, value: Any, stream: bool) -> dict[str, Any]:
    read = READS[api].get(param)
    template = read[2] if read is not None and read[2] is not None else {param: HOLE}
    return {**deepcopy(BASES[api]), "stream": stream, **filled(template, value)}


def upstream_reply(body: dict[str, Any]) -> Reply:
    """A server tool call first; once the request carries its result, an answer."""
    streaming = body.get("stream") is True
    if "messages" in body:
        answered = any(isinstance(m, dict) and m.get("role") == "tool" for m in body["messages"])
        if streaming:
            return text_round("done") if answered else calls_round(("call_1", "weather", "{}"))
        if answered:
            return completion({"role": "assistant", "content": "done"})
        call = {
            "id": "call_1",
            "type": "function",
            "function": {"name": "weather", "arguments": "{}"},
        }
        return completion(
            {"role": "assistant", "content": None, "tool_calls": [call]}, "tool_calls"
        )
    items = body.get("input") if isinstance(body.get("input"), list) else []
    answered = any(isinstance(i, dict) and i.get("type") == "function_call_output" for i in items)
    if streaming:
        if answered:
            return stream_round("resp_2", message_events(0, "done"))
        return stream_round("resp_1", call_events(0, "call_1", "weather", "{}"))
    if answered:
        return body_round("resp_2", message_events(0, "done")[1])
    return body_round("resp_1", call_events(0, "call_1", "weather", "{}")[1])


class Answering(ScriptedUpstream):
    """An upstream answering each request by what it carries (`upstream_reply`)."""

    def next_reply(self, body: bytes, headers: dict[str, str]) -> Reply:
        self.requests.append(json.loads(body))
        return upstream_reply(self.requests[-1])


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def proxy() -> AsyncIterator[tuple[httpx2.AsyncClient, list[dict[str, Any]]]]:
    """The app, its upstream, and the requests the upstream got. The Responses memory holds
    a conversation, so that every request is looked up in it too."""
    script = Answering()
    async with loopback(script) as served, raw_client(upstream=served.url) as http:
        for api, stream in [("responses", False), ("responses", True)]:
            response = await http.post(PATHS[api], json=request(api, "model", "m", stream))
            assert_answered(api, response)
        yield http, script.requests


@pytest.fixture(scope="module")
def served() -> Iterator[httpx2.Client]:
    """A client of the proxy on loopback, its upstream unreachable: a request that passes the
    checks would be a 502."""
    app = create_app(Settings(upstream="http://127.0.0.1:9/v1"), SERVER_TOOLS)
    with serve(app) as url, httpx2.Client(base_url=url) as http:
        yield http


def error_of(response: httpx2.Response) -> dict[str, Any]:
    """The OpenAI error format, exactly."""
    body = response.json()
    assert list(body) == ["error"] and set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def assert_answered(api: str, response: httpx2.Response) -> None:
    """A whole, successful answer: no error event, no truncated stream."""
    if not response.headers["content-type"].startswith("text/event-stream"):
        assert (
            response.json()["object"] == {"chat": "chat.completion", "responses": "response"}[api]
        )
        return
    events = [json.loads(f.split("data:", 1)[1]) for f in sse_frames(response.text)[:-1]]
    if api == "chat":
        assert sse_frames(response.text)[-1] == "data: [DONE]"
        assert not [e for e in events if "error" in e]
    else:
        last = json.loads(sse_frames(response.text)[-1].split("data:", 1)[1])
        assert last["type"] == "response.completed", last
        assert not [e for e in events if e["type"] in ("error", "response.failed")]


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize(("api", "param"), CASES, ids=[f"{a}:{p}" for a, p in CASES])
async def test_no_json_type_crashes_the_proxy(proxy, api, param, stream):
    http, seen = proxy
    read = READS[api].get(param)
    for value in VALUES:
        seen.clear()
        response = await http.post(PATHS[api], json=request(api, param, value, stream))
        where = f"{param} = {value!r}"
        refused = refused_at(param, read, value)
        if refused is not None:
            assert response.status_code == 400, where
            error = error_of(response)
            assert (error["param"], error["code"]) == (refused, "invalid_type"), where
            assert error["type"] == "invalid_request_error"
            assert error["message"].startswith(f"Invalid type for '{refused}': expected "), where
            assert not seen, where
            continue
        assert response.status_code == 200, (where, response.text)
        assert_answered(api, response)
        if read is None:  # the upstream judges it
            assert json.dumps(seen[0][param]) == json.dumps(value), where


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        (
            "/v1/chat/completions",
            {"model": "m", "messages": [1]},
            "Invalid type for 'messages[0]': expected an object, but got an integer instead.",
        ),
        (
            "/v1/chat/completions",
            {"model": "m", "messages": [], "stream": True, "stream_options": "x"},
            "Invalid type for 'stream_options': expected an object, but got a string instead.",
        ),
        (
            "/v1/chat/completions",
            {"model": "m", "messages": "hi"},
            "Invalid type for 'messages': expected an array of objects, but got a string instead.",
        ),
        (
            "/v1/chat/completions",
            {"model": "m", "messages": [], "tools": [{"function": {"name": 1.5}}]},
            "Invalid type for 'tools[0].function.name': expected a string, but got a decimal "
            "number instead.",
        ),
        (
            "/v1/chat/completions",
            {"model": "m", "messages": [], "n": True},
            "Invalid type for 'n': expected an integer, but got a boolean instead.",
        ),
        (
            "/v1/responses",
            {"model": "m", "input": [1]},
            "Invalid type for 'input[0]': expected an object, but got an integer instead.",
        ),
        (
            "/v1/responses",
            {"model": "m", "input": {}},
            "Invalid type for 'input': expected one of a string or array of objects, but got an "
            "object instead.",
        ),
        (
            "/v1/responses",
            {"model": "m", "previous_response_id": [1]},
            "Invalid type for 'previous_response_id': expected a string, but got an array instead.",
        ),
        (
            "/v1/responses",
            {"model": "m", "tool_choice": None, "conversation": 1},
            "Invalid type for 'conversation': expected one of a string or object, but got an "
            "integer instead.",
        ),
        (
            "/v1/responses",
            {"model": "m", "include": ["x", None]},
            "Invalid type for 'include[1]': expected a string, but got null instead.",
        ),
    ],
)
def test_the_issue_examples_are_400s_in_openai_words(served, path, body, message):
    """Over real sockets, as the issue saw them: OpenAI's own message, type, param, code."""
    response = served.post(path, json=body)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    error = error_of(response)
    assert error["message"] == message
    assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_type")
    assert error["param"] == message.split("'")[1]


@pytest.mark.parametrize("path", PATHS.values())
@pytest.mark.parametrize(
    ("raw", "code", "message"),
    [
        (b"[1]", "invalid_type", "Invalid type for the request body: expected an object, but got"),
        (b'"hi"', "invalid_type", "Invalid type for the request body: expected an object, but"),
        (b"null", "invalid_type", "Invalid type for the request body: expected an object, but"),
        (b'{"model": "\xff"}', None, "We could not parse the JSON body"),
        (b"\xef\xbb\xbf{}", None, "We could not parse the JSON body"),
    ],
    ids=["array", "string", "null", "invalid-utf8", "bom"],
)
def test_a_body_that_is_no_json_object_is_a_400(served, path, raw, code, message):
    response = served.post(path, content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 400
    error = error_of(response)
    assert error["message"].startswith(message)
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", None, code)


@pytest.mark.asyncio(loop_scope="module")
async def test_messages_are_required(proxy):
    response = await proxy[0].post("/v1/chat/completions", json={"model": "m"})
    assert response.status_code == 400
    assert error_of(response) == {
        "message": "Missing required parameter: 'messages'.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "missing_required_parameter",
    }
