"""Reading non-streamed chat completions, and merging the rounds into the one the client gets."""

from __future__ import annotations

from typing import Any

import orjson

from proxy.chat.message import MessageAccumulator
from proxy.errors import APIError
from proxy.loop.round import RoundOutcome
from proxy.loop.usage import add_usage

_MERGED_TEXT = ("content", "reasoning_content", "reasoning", "refusal")


class ChatCompletionReader:
    """The non-streaming counterpart of `ChatStream`: same loop, one JSON body per round."""

    def __init__(self, server_tools: frozenset[str]) -> None:
        self.server_tools = server_tools
        self.first_id: str | None = None
        self.texts: dict[str, list[str]] = {}
        self.usage: dict[str, Any] | None = None
        self.completion: dict[str, Any] = {}
        self.start_round()

    def start_round(self) -> None:
        self.body = bytearray()
        self.message = MessageAccumulator()

    def feed(self, data: bytes) -> bytes:
        self.body += data
        return b""

    def end_round(self) -> RoundOutcome:
        try:
            completion = orjson.loads(self.body)
            message = completion["choices"][0]["message"]
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError) as exc:
            raise APIError.of(
                502,
                f"the upstream API sent a response that is not a chat completion: "
                f"{bytes(self.body[:300]).decode('utf-8', 'replace')}",
                "server_error",
                None,
                "bad_upstream_response",
            ) from exc
        self.completion = completion
        self.first_id = self.first_id or completion.get("id")
        if completion.get("usage"):
            self.usage = add_usage(self.usage, completion["usage"])
        for key in _MERGED_TEXT:
            if isinstance(message.get(key), str):
                self.texts.setdefault(key, []).append(message[key])
        self.message.add_fields(message)
        for i, raw in enumerate(message.get("tool_calls") or []):
            self.message.calls.add({**raw, "index": i})
        if message.get("function_call"):
            self.message.legacy = True
            self.message.calls.add({"index": "legacy", "function": message["function_call"]})
        server = self.message.server_calls(self.server_tools)
        return RoundOutcome(
            server_calls=server, client_calls=len(self.message.calls.calls) - len(server)
        )

    def finish(self) -> list[bytes]:
        completion = self.completion
        choice = completion["choices"][0]
        message = choice["message"]
        for key, parts in self.texts.items():
            message[key] = "".join(parts)
        client_calls = [
            c
            for c in message.get("tool_calls") or []
            if c.get("function", {}).get("name") not in self.server_tools
        ]
        if message.get("tool_calls"):
            if client_calls:
                message["tool_calls"] = client_calls
            else:
                message.pop("tool_calls")
        legacy = message.get("function_call")
        if legacy and legacy.get("name") in self.server_tools:
            message.pop("function_call")
        if client_calls:
            choice["finish_reason"] = "tool_calls"
        elif message.get("function_call"):
            choice["finish_reason"] = "function_call"
        elif choice.get("finish_reason") in ("tool_calls", "function_call"):
            choice["finish_reason"] = "stop"
        if self.first_id:
            completion["id"] = self.first_id
        if self.usage is not None:
            completion["usage"] = self.usage
        return [orjson.dumps(completion)]

    def fail(self, message: str, code: str) -> list[bytes]:  # pragma: no cover - never sent
        raise AssertionError("a non-streaming response has nothing sent before it ends")
