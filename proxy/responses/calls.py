"""The proxy's own calls inside Responses output: hidden `function_call` items, optionally shown
to the client as `mcp_call` items (the standard shape for server-run tools) and taken back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from proxy.tools.runner import ToolCall, ToolResult

SERVER_LABEL = "openai-tool-proxy"
_MCP_PREFIX = "mcp_"


# Output items the client must answer in its next request (its tools, computer use, …).
_CLIENT_ANSWERS = frozenset(
    {
        "function_call",
        "custom_tool_call",
        "computer_call",
        "local_shell_call",
        "shell_call",
        "apply_patch_call",
        "mcp_approval_request",
    }
)


def is_server_call(item: dict[str, Any], server_tools: frozenset[str]) -> bool:
    return item.get("type") == "function_call" and item.get("name") in server_tools


def awaits_client(item: dict[str, Any], server_tools: frozenset[str]) -> bool:
    """Whether the client must answer this item: the round then ends with it."""
    return item.get("type") in _CLIENT_ANSWERS and not is_server_call(item, server_tools)


@dataclass
class HiddenCall:
    """A server call seen in the upstream's output, assembled from its events."""

    item: dict[str, Any]
    parts: list[str] = field(default_factory=list)
    arguments: str | None = None  # from `.done` or the finished item, when they come
    client_index: int | None = None  # where the client sees it as an `mcp_call`, if shown
    shown_done: bool = False

    def finish(self, item: dict[str, Any]) -> None:
        self.item = {**self.item, **item}
        if isinstance(item.get("arguments"), str):
            self.arguments = item["arguments"]

    @property
    def call(self) -> ToolCall:
        arguments = self.arguments if self.arguments is not None else "".join(self.parts)
        return ToolCall(self.item.get("call_id") or "", self.item.get("name") or "", arguments)


def mcp_item(call: ToolCall, result: ToolResult | None) -> dict[str, Any]:
    """The `mcp_call` item the client sees for one of the proxy's calls."""
    item: dict[str, Any] = {
        "type": "mcp_call",
        "id": _MCP_PREFIX + call.id,
        "server_label": SERVER_LABEL,
        "name": call.name,
        "arguments": call.arguments,
        "status": "in_progress",
        "output": None,
        "error": None,
    }
    if result is not None:
        item["output"] = result.output
        item["status"] = "completed" if result.ok else "failed"
        if not result.ok:
            item["error"] = {
                "type": "mcp_tool_execution_error",
                "content": [{"type": "text", "text": result.output}],
            }
    return item


def function_call_output(result: ToolResult) -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": result.call.id, "output": result.output}


def unfold_mcp_items(items: list[Any]) -> list[Any]:
    """Turn `mcp_call` items the proxy once showed back into the `function_call` +
    `function_call_output` pair the upstream understands; everything else stays as it is."""
    if not any(isinstance(i, dict) and i.get("type") == "mcp_call" for i in items):
        return items
    unfolded: list[Any] = []
    for item in items:
        if (
            isinstance(item, dict)
            and item.get("type") == "mcp_call"
            and item.get("server_label") == SERVER_LABEL
        ):
            call_id = str(item.get("id", "")).removeprefix(_MCP_PREFIX)
            unfolded.append(
                {
                    "type": "function_call",
                    "call_id": call_id,
                    "name": item.get("name"),
                    "arguments": item.get("arguments") or "{}",
                }
            )
            unfolded.append(
                {
                    "type": "function_call_output",
                    "call_id": call_id,
                    "output": item.get("output") or _error_text(item),
                }
            )
        else:
            unfolded.append(item)
    return unfolded


def _error_text(item: dict[str, Any]) -> str:
    error = item.get("error")
    if isinstance(error, dict):
        for part in error.get("content") or []:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                return str(part["text"])
        if isinstance(error.get("message"), str):
            return str(error["message"])
    return "error: the tool produced no output"
