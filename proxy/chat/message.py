"""The assistant message of one round, rebuilt from streamed deltas with every field kept."""

from __future__ import annotations

from typing import Any

from proxy.chat.calls import CallAssembler

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
            else:
                self.fields[key] = value

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
