"""Building chat completion chunks and bodies for scripted upstreams."""

from __future__ import annotations

from typing import Any

from tests.upstream import Reply, sse


def chunk(
    delta: dict[str, Any] | None = None,
    finish: str | None = None,
    id: str = "chatcmpl-1",
    usage: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": id,
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}],
        **extra,
    }
    if usage is not None:
        body["usage"] = usage
    return body


def call(index: int | None, id: str | None, name: str | None, arguments: str) -> dict[str, Any]:
    fragment: dict[str, Any] = {"function": {"arguments": arguments}}
    if index is not None:
        fragment["index"] = index
    if id is not None:
        fragment["id"] = id
        fragment["type"] = "function"
    if name is not None:
        fragment["function"]["name"] = name
    return fragment


def usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def calls_round(*calls: tuple[str, str, str], id: str = "chatcmpl-1", **extra: Any) -> Reply:
    """A streamed round in which the model calls `(id, name, arguments)` for each call."""
    chunks = [chunk({"role": "assistant", "content": None}, id=id)]
    for i, (call_id, name, arguments) in enumerate(calls):
        chunks.append(chunk({"tool_calls": [call(i, call_id, name, "")]}, id=id))
        chunks.append(chunk({"tool_calls": [call(i, None, None, arguments)]}, id=id))
    chunks.append(chunk(finish="tool_calls", id=id, **extra))
    return Reply(sse(*chunks))


def text_round(text: str, id: str = "chatcmpl-2", **extra: Any) -> Reply:
    return Reply(
        sse(
            chunk({"role": "assistant", "content": ""}, id=id),
            chunk({"content": text}, id=id),
            chunk(finish="stop", id=id, **extra),
        )
    )


def completion(
    message: dict[str, Any], finish: str = "stop", id: str = "chatcmpl-1", **extra: Any
) -> Reply:
    """A non-streamed chat completion."""
    import json

    body = {
        "id": id,
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        **extra,
    }
    return Reply(json.dumps(body).encode(), content_type="application/json")
