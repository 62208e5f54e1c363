"""Building Responses API event streams and bodies for scripted upstreams."""

from __future__ import annotations

import json
from typing import Any

from tests.upstream import Reply


def response(
    id: str,
    output: list[dict[str, Any]] | None = None,
    status: str = "completed",
    usage: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "id": id,
        "object": "response",
        "created_at": 1,
        "status": status,
        "model": "m",
        "output": output or [],
        "usage": usage,
        "tools": [],
        "previous_response_id": None,
        "error": None,
        "incomplete_details": None,
        **extra,
    }


def frame(event: dict[str, Any]) -> bytes:
    """One event as real upstreams write it: an `event:` line, then compact JSON."""
    data = json.dumps(event, separators=(",", ":"))
    return f"event: {event['type']}\ndata: {data}\n\n".encode()


def events_body(*events: dict[str, Any], numbered: bool = True) -> bytes:
    """SSE frames with `event:` lines and sequence numbers from 0 — or, not `numbered`, as
    llama.cpp sends them: no `sequence_number` and no `output_index` anywhere."""
    if numbered:
        return b"".join(frame({**event, "sequence_number": n}) for n, event in enumerate(events))
    return b"".join(frame({k: v for k, v in e.items() if k != "output_index"}) for e in events)


def usage(inp: int, out: int) -> dict[str, Any]:
    return {
        "input_tokens": inp,
        "output_tokens": out,
        "total_tokens": inp + out,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens_details": {"reasoning_tokens": 0},
    }


def message_events(index: int, text: str, id: str = "msg_1") -> tuple[list[dict[str, Any]], dict]:
    item = {
        "id": id,
        "type": "message",
        "status": "in_progress",
        "role": "assistant",
        "content": [],
    }
    done = {
        **item,
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }
    part = {"type": "output_text", "text": "", "annotations": []}
    events = [
        {"type": "response.output_item.added", "output_index": index, "item": item},
        {
            "type": "response.content_part.added",
            "item_id": id,
            "output_index": index,
            "content_index": 0,
            "part": part,
        },
    ]
    for word in text.split(" "):
        events.append(
            {
                "type": "response.output_text.delta",
                "item_id": id,
                "output_index": index,
                "content_index": 0,
                "delta": word if not events[2:] else " " + word,
                "logprobs": [],
            }
        )
    events += [
        {
            "type": "response.output_text.done",
            "item_id": id,
            "output_index": index,
            "content_index": 0,
            "text": text,
            "logprobs": [],
        },
        {
            "type": "response.content_part.done",
            "item_id": id,
            "output_index": index,
            "content_index": 0,
            "part": {**part, "text": text},
        },
        {"type": "response.output_item.done", "output_index": index, "item": done},
    ]
    return events, done


def call_events(
    index: int, call_id: str, name: str, arguments: str, id: str | None = None
) -> tuple[list[dict[str, Any]], dict]:
    item_id = id or "fc_" + call_id
    item = {
        "id": item_id,
        "type": "function_call",
        "status": "in_progress",
        "arguments": "",
        "call_id": call_id,
        "name": name,
    }
    done = {**item, "status": "completed", "arguments": arguments}
    half = len(arguments) // 2
    events = [
        {"type": "response.output_item.added", "output_index": index, "item": item},
        {
            "type": "response.function_call_arguments.delta",
            "item_id": item_id,
            "output_index": index,
            "delta": arguments[:half],
        },
        {
            "type": "response.function_call_arguments.delta",
            "item_id": item_id,
            "output_index": index,
            "delta": arguments[half:],
        },
        {
            "type": "response.function_call_arguments.done",
            "item_id": item_id,
            "output_index": index,
            "arguments": arguments,
        },
        {"type": "response.output_item.done", "output_index": index, "item": done},
    ]
    return events, done


def stream_round(
    id: str,
    *parts: tuple[list[dict[str, Any]], dict],
    usage: dict[str, Any] | None = None,
    end: str = "response.completed",
    numbered: bool = True,
) -> Reply:
    """A streamed round: created, in_progress, the items' events, then the terminal event
    (`numbered` as in `events_body`)."""
    events = [
        {"type": "response.created", "response": response(id, status="in_progress")},
        {"type": "response.in_progress", "response": response(id, status="in_progress")},
    ]
    for item_events, _ in parts:
        events += item_events
    status = "completed" if end == "response.completed" else "incomplete"
    final = response(id, [done for _, done in parts], status=status, usage=usage)
    events.append({"type": end, "response": final})
    return Reply(events_body(*events, numbered=numbered))


def body_round(id: str, *items: dict[str, Any], usage: dict[str, Any] | None = None) -> Reply:
    """A non-streamed response."""
    return Reply(
        json.dumps(response(id, list(items), usage=usage)).encode(), content_type="application/json"
    )
