"""Summing token usage over the rounds of one request."""

from __future__ import annotations

from typing import Any


def add_usage(total: dict[str, Any] | None, usage: dict[str, Any]) -> dict[str, Any]:
    """Add `usage` into a copy of `total`: numbers are summed (nested details too); any other
    value keeps the latest round's."""
    if total is None:
        return dict(usage)
    merged = dict(total)
    for key, value in usage.items():
        before = merged.get(key)
        if isinstance(value, bool) or value is None:
            merged[key] = value if value is not None else before
        elif isinstance(value, int | float) and isinstance(before, int | float):
            merged[key] = before + value
        elif isinstance(value, dict) and isinstance(before, dict):
            merged[key] = add_usage(before, value)
        else:
            merged[key] = value
    return merged
