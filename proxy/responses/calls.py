"""The proxy's own calls inside Responses output: hidden `function_call` items, or shown to the
client as `mcp_call` items (the standard shape for server-run tools) — or, held for the
client's approval, as `mcp_approval_request` items — and taken back from its later input."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from proxy.tools.runner import ToolCall, ToolResult
from proxy.tools.tool import Tool

SERVER_LABEL = "openai-tool-proxy"  # the label of shown calls of tools no server provides
_MCP_PREFIX = "mcp_"
APPROVAL_PREFIX = "mcpr_"
DECLINED = "error: the user declined to run this call"
UNANSWERED = "error: this call did not run: its approval request was not answered"


def label_of(tool: Tool) -> tuple[str, str]:
    """The `server_label` and name the client sees a tool's calls under."""
    if tool.origin is not None:
        return tool.origin.server, tool.origin.name
    return SERVER_LABEL, tool.name


@dataclass(frozen=True)
class Showing:
    """Which calls are the proxy's, and how the client sees each: hidden, or as an `mcp_call`
    of its server label (every call with `show_calls`; a hosted server's always) — or, for a
    hosted tool whose calls wait for approval, as an `mcp_approval_request`."""

    server_tools: frozenset[str]
    shown: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # name -> label, name
    approvals: frozenset[str] = frozenset()

    def shown_id(self, item: dict[str, Any]) -> str | None:
        """The id the client knows a server call item by, when it is shown."""
        name = item.get("name")
        if item.get("type") != "function_call" or name not in self.shown:
            return None
        prefix = APPROVAL_PREFIX if name in self.approvals else _MCP_PREFIX
        return prefix + str(item.get("call_id") or "")


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
    shown_as: tuple[str, str] | None = None  # the label and name the client sees it under
    approval: bool = False  # held for the client's approval: shown, not run
    parts: list[str] = field(default_factory=list)
    arguments: str | None = None  # from `.done` or the finished item, when they come
    client_index: int | None = None  # where the client sees it, if shown
    shown_done: bool = False

    @classmethod
    def of(cls, item: dict[str, Any], showing: Showing) -> HiddenCall:
        name = item.get("name")
        return cls(item, showing.shown.get(name), name in showing.approvals)  # type: ignore[arg-type]

    def shown(self, result: ToolResult | None) -> dict[str, Any]:
        """The item the client sees for this call (it is shown: `shown_as` is set)."""
        assert self.shown_as is not None
        if self.approval:
            return approval_item(self.call, self.shown_as)
        return mcp_item(self.call, result, self.shown_as)

    def finish(self, item: dict[str, Any]) -> None:
        self.item = {**self.item, **item}
        if isinstance(item.get("arguments"), str):
            self.arguments = item["arguments"]

    @property
    def call(self) -> ToolCall:
        arguments = self.arguments if self.arguments is not None else "".join(self.parts)
        return ToolCall(self.item.get("call_id") or "", self.item.get("name") or "", arguments)


def mcp_item(
    call: ToolCall,
    result: ToolResult | None,
    shown_as: tuple[str, str],
    approval_request_id: str | None = None,
) -> dict[str, Any]:
    """The `mcp_call` item the client sees for one of the proxy's calls."""
    label, name = shown_as
    item: dict[str, Any] = {
        "type": "mcp_call",
        "id": _MCP_PREFIX + call.id,
        "server_label": label,
        "name": name,
        "arguments": call.arguments,
        "status": "in_progress",
        "output": None,
        "error": None,
    }
    if approval_request_id is not None:
        item["approval_request_id"] = approval_request_id
    if result is not None:
        item["output"] = result.output
        item["status"] = "completed" if result.ok else "failed"
        if not result.ok:
            item["error"] = {
                "type": "mcp_tool_execution_error",
                "content": [{"type": "text", "text": result.output}],
            }
    return item


def approval_item(call: ToolCall, shown_as: tuple[str, str]) -> dict[str, Any]:
    """The `mcp_approval_request` item that asks the client whether to run a call."""
    label, name = shown_as
    return {
        "type": "mcp_approval_request",
        "id": APPROVAL_PREFIX + call.id,
        "server_label": label,
        "name": name,
        "arguments": call.arguments,
    }


def function_call_output(result: ToolResult) -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": result.call.id, "output": result.output}


def unfold_mcp_items(
    items: list[Any],
    names: Mapping[tuple[str, str], str],
    labels: Collection[str],
    unanswered: Collection[str] = (),
) -> list[Any]:
    """Turn the items the proxy once showed — those of its `labels` — back into what the
    upstream understands: an `mcp_call` into its `function_call` + `function_call_output`, an
    `mcp_approval_request` into its `function_call` (its output comes from the approval:
    `proxy.responses.approvals`; for one in `unanswered`, an output saying so), an
    `mcp_list_tools` into nothing. `names` maps a shown label and name to the tool's name.
    Items of other labels stay as they are, and so does everything else."""
    if not any(isinstance(i, dict) and i.get("type") in _UNFOLDED for i in items):
        return items
    calls = {
        str(i.get("id", "")).removeprefix(_MCP_PREFIX)
        for i in items
        if isinstance(i, dict) and i.get("type") == "mcp_call"
    }
    unfolded: list[Any] = []
    for item in items:
        kind = item.get("type") if isinstance(item, dict) else None
        if kind not in _UNFOLDED or item.get("server_label") not in labels:
            unfolded.append(item)
            continue
        name = names.get((item["server_label"], item.get("name"))) or item.get("name")
        if kind == "mcp_call":
            call_id = str(item.get("id", "")).removeprefix(_MCP_PREFIX)
            unfolded.append(_function_call(call_id, name, item))
            output = item.get("output")
            output = _error_text(item) if output is None else output
            unfolded.append({"type": "function_call_output", "call_id": call_id, "output": output})
        elif kind == "mcp_approval_request":
            call_id = str(item.get("id", "")).removeprefix(APPROVAL_PREFIX)
            if call_id not in calls:  # once run, its `mcp_call` stands for it
                unfolded.append(_function_call(call_id, name, item))
            if item.get("id") in unanswered:
                unfolded.append(not_run(call_id))
    return unfolded


def not_run(call_id: str) -> dict[str, Any]:
    """The output of a held call the client did not answer: every call needs one upstream."""
    return {"type": "function_call_output", "call_id": call_id, "output": UNANSWERED}


_UNFOLDED = frozenset({"mcp_call", "mcp_approval_request", "mcp_list_tools"})


def _function_call(call_id: str, name: str, item: dict[str, Any]) -> dict[str, Any]:
    arguments = item.get("arguments") or "{}"
    return {"type": "function_call", "call_id": call_id, "name": name, "arguments": arguments}


def _error_text(item: dict[str, Any]) -> str:
    error = item.get("error")
    if isinstance(error, dict):
        for part in error.get("content") or []:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                return str(part["text"])
        if isinstance(error.get("message"), str):
            return str(error["message"])
    return "error: the tool produced no output"
