"""`tool_choice` after the first round: a forced choice holds once, or the model would loop."""

from __future__ import annotations

from typing import Any


def relaxed(choice: Any) -> Any:
    """The choice for later rounds: `required` or a named tool become `auto`; an
    `allowed_tools` list keeps its tools with mode `auto` (Chat nests it, Responses doesn't)."""
    if choice in (None, "auto", "none"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        nested = choice.get("allowed_tools")
        if isinstance(nested, dict):
            return {**choice, "allowed_tools": {**nested, "mode": "auto"}}
        return {**choice, "mode": "auto"}
    return "auto"
