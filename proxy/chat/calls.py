"""Assembling streamed tool-call fragments into whole calls, whatever shape the provider uses.

Quirks handled (DESIGN §5): no `index` (Gemini, Mistral, old Ollama); every call at index 0
(Ollama: calls are told apart by `id`); indices starting at 1; a whole call in one fragment;
`""` or repeated `id`/`type`/`name` on continuation fragments; arguments re-sent cumulatively.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any

_KNOWN_CALL_KEYS = frozenset({"index", "id", "type", "function"})
_KNOWN_FUNCTION_KEYS = frozenset({"name", "arguments"})


@dataclass
class Call:
    """One tool call as assembled so far, with every extra field the provider attached."""

    id: str
    name: str = ""
    arguments: str = ""
    type: str = "function"
    extra: dict[str, Any] = field(default_factory=dict)
    function_extra: dict[str, Any] = field(default_factory=dict)

    def as_message_part(self) -> dict[str, Any]:
        """The call as it goes back upstream in the assistant message of the next round."""
        return {
            **self.extra,
            "id": self.id,
            "type": self.type,
            "function": {
                **self.function_extra,
                "name": self.name,
                "arguments": self.arguments or "{}",
            },
        }


@dataclass
class Fragment:
    """What one streamed fragment added to a call, normalized: new text only, name once."""

    call: Call
    is_new: bool
    arguments: str
    extra: dict[str, Any]
    function_extra: dict[str, Any]


class CallAssembler:
    """Feed raw fragments in arrival order; each comes back attributed to its call."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._by_id: dict[str, Call] = {}
        self._by_index: dict[Any, Call] = {}

    def add(self, raw: dict[str, Any]) -> Fragment:
        fn = raw.get("function")
        if not isinstance(fn, dict):
            fn = {}
        call_id: str = raw["id"] if isinstance(raw.get("id"), str) else ""
        index = raw.get("index")
        call = self._find(call_id, index)
        is_new = call is None
        if call is None:
            call = Call(id=call_id or "call_" + secrets.token_hex(12))
            self.calls.append(call)
            if call_id:
                self._by_id[call_id] = call
        self._by_index[index] = call
        if raw.get("type"):
            call.type = raw["type"]
        name: str = fn["name"] if isinstance(fn.get("name"), str) else ""
        if name and not call.name:
            call.name = name
        elif name and name != call.name:
            call.name += name  # a name genuinely streamed in pieces
        arguments = fn.get("arguments") or ""
        if not isinstance(arguments, str):  # some servers send the object itself
            arguments = json.dumps(arguments, ensure_ascii=False)
        added = self._add_arguments(call, arguments)
        extra = {k: v for k, v in raw.items() if k not in _KNOWN_CALL_KEYS and v is not None}
        function_extra = {
            k: v for k, v in fn.items() if k not in _KNOWN_FUNCTION_KEYS and v is not None
        }
        call.extra.update(extra)
        call.function_extra.update(function_extra)
        return Fragment(call, is_new, added, extra, function_extra)

    def _find(self, call_id: str, index: Any) -> Call | None:
        if call_id:
            return self._by_id.get(call_id)
        if index is None:
            return self.calls[-1] if self.calls else None
        return self._by_index.get(index)

    @staticmethod
    def _add_arguments(call: Call, text: str) -> str:
        if not text:
            return ""
        if call.arguments and text.startswith(call.arguments):
            # The provider re-sent everything so far: keep only what is new.
            added = text[len(call.arguments) :]
            call.arguments = text
            return added
        call.arguments += text
        return text
