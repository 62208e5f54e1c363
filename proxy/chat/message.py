"""The assistant message of one round, rebuilt from streamed deltas with every field kept."""

from __future__ import annotations

from typing import Any

from proxy.chat.calls import CallAssembler
from proxy.tools.runner import ToolCall

_STRUCTURAL = frozenset({"role", "tool_calls", "function_call"})


class MessageAccumulator:
    """Concatenates string fields (`content`, `reasoning_content`, …), keeps the last value of
    any other field, and assembles tool calls — so the next round sees what the model said."""

    def __init__(self) -> None:
        self.fields: dict[str, Any] = {}
        self.texts: dict[str, list[str]] = {}  # joined once, at the end: no quadratic concat
        self.calls = CallAssembler()
        self.legacy = False  # the calls came as `function_call` (legacy functions API)

    def add_fields(self, delta: dict[str, Any]) -> None:
        for key, value in delta.items():
            if value is None or key in _STRUCTURAL:
                continue
            if isinstance(value, str):
                parts = self.texts.get(key)
                if parts is None:
                    self.texts[key] = [value]
                else:
                    parts.append(value)
            elif isinstance(value, list) and isinstance(self.fields.get(key), list):
                _merge_list(self.fields[key], value)
            else:
                self.fields[key] = list(value) if isinstance(value, list) else value

    def server_calls(self, server_tools: frozenset[str]) -> list[ToolCall]:
        """The calls of this round that the proxy runs itself."""
        return [
            ToolCall(c.id, c.name, c.arguments) for c in self.calls.calls if c.name in server_tools
        ]

    def message(self) -> dict[str, Any]:
        """The assistant message to send back upstream with this round's calls."""
        message: dict[str, Any] = {"role": "assistant", "content": None, **self.fields}
        message.update((key, "".join(parts)) for key, parts in self.texts.items())
        if self.legacy and self.calls.calls:
            call = self.calls.calls[0]
            message["function_call"] = {"name": call.name, "arguments": call.arguments or "{}"}
        elif self.calls.calls:
            message["tool_calls"] = [call.as_message_part() for call in self.calls.calls]
        return message


_SET_NOT_JOINED = frozenset({"index", "type", "id"})


def _merge_list(merged: list[Any], entries: list[Any]) -> None:
    """Streamed list fields (e.g. `reasoning_details`): entries with the same `index` are one
    entry arriving in pieces, their strings joined; the others are appended."""
    for entry in entries:
        if isinstance(entry, dict) and "index" in entry:
            for existing in merged:
                if isinstance(existing, dict) and existing.get("index") == entry["index"]:
                    for key, value in entry.items():
                        before = existing.get(key)
                        if (
                            isinstance(value, str)
                            and isinstance(before, str)
                            and key not in _SET_NOT_JOINED
                        ):
                            existing[key] = before + value
                        elif value is not None:
                            existing[key] = value
                    break
            else:
                merged.append(dict(entry))
        else:
            merged.append(entry)
