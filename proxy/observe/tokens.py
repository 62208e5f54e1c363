"""Input and output tokens out of a usage object, in either dialect's names."""

from __future__ import annotations

from typing import Any


def tokens_of(usage: dict[str, Any] | None) -> tuple[int, int] | None:
    """(input, output) tokens: Chat's `prompt_tokens`/`completion_tokens`, Responses'
    `input_tokens`/`output_tokens`; None when the usage tells neither."""
    if not usage:
        return None
    taken = usage.get("prompt_tokens", usage.get("input_tokens"))
    given = usage.get("completion_tokens", usage.get("output_tokens"))
    if not isinstance(taken, int) and not isinstance(given, int):
        return None
    return _count(taken), _count(given)


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
