"""OpenAI's hosted `mcp` tool, run by the proxy for any upstream.

A Responses request tool `{"type": "mcp", "server_label": L, …}` whose label names a server a
tool provider connects to (`ToolProvider.servers`) never goes upstream: the server's tools go
as function tools instead, narrowed by `allowed_tools`, and their calls are shown as OpenAI
shows them — `mcp_list_tools`, `mcp_call`, and `mcp_approval_request` for the calls that
`require_approval` (OpenAI's default: every call) holds for the client's decision. Any other
label passes upstream untouched: the proxy never connects to a URL a client sends.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from proxy.errors import APIError
from proxy.tools.tool import Tool

LIST_PREFIX = "mcpl_"
_SECRET = frozenset({"authorization", "headers"})  # a hosted tool's fields never echoed


@dataclass(frozen=True)
class _Filter:
    """OpenAI's tool filter (`allowed_tools`, `require_approval.always/never`): tool names
    and/or the read-only hint; a tool matches when it meets every part given."""

    names: frozenset[str] | None = None
    read_only: bool | None = None

    @classmethod
    def of(cls, value: Any) -> _Filter | None:
        if isinstance(value, list):
            return cls(frozenset(value))
        if not isinstance(value, dict):
            return None
        names = value.get("tool_names")
        read_only = value.get("read_only")
        if names is None and read_only is None:
            return None
        return cls(None if names is None else frozenset(names), read_only)

    def matches(self, tool: Tool) -> bool:
        assert tool.origin is not None
        return (self.names is None or tool.origin.name in self.names) and (
            self.read_only is None or tool.origin.read_only is self.read_only
        )


@dataclass
class Hosted:
    """One hosted `mcp` tool of the request, for a configured server."""

    spec: dict[str, Any]
    label: str
    tools: list[Tool] = field(default_factory=list)  # the server's tools this request may use

    def needs_approval(self, tool: Tool) -> bool:
        """OpenAI's rule: `never` and `always` filters (`always` wins where both match);
        every other call needs the client's approval — `require_approval` left out too."""
        rule = self.spec.get("require_approval")
        if rule == "never":
            return False
        if not isinstance(rule, dict):
            return True
        always = _Filter.of(rule.get("always"))
        never = _Filter.of(rule.get("never"))
        if always is not None and always.matches(tool):
            return True
        return not (never is not None and never.matches(tool))

    def list_item(self) -> dict[str, Any]:
        """The `mcp_list_tools` item that tells the client which tools the model got."""
        return {
            "type": "mcp_list_tools",
            "id": LIST_PREFIX + secrets.token_hex(12),
            "server_label": self.label,
            "tools": [
                {
                    "name": tool.origin.name if tool.origin else tool.name,
                    "description": tool.description,
                    "input_schema": tool.parameters,
                    "annotations": (  # MCP's own spelling
                        {"readOnlyHint": True} if tool.origin and tool.origin.read_only else None
                    ),
                }
                for tool in self.tools
            ],
            "error": None,
        }


class HostedMCP:
    """The request's hosted `mcp` tools that name configured servers, taken out of its
    `tools`; `tools` are the server tools the request gets, theirs narrowed."""

    def __init__(self, body: dict[str, Any], tools: Iterable[Tool], servers: Collection[str]):
        self.by_label: dict[str, Hosted] = {}
        kept: list[Any] = []
        for spec in body.get("tools") or []:
            label = spec.get("server_label")  # a string, or absent: `request_checks`
            if spec.get("type") == "mcp" and isinstance(label, str) and label in servers:
                self.by_label.setdefault(label, Hosted(spec, label))
            else:
                kept.append(spec)
        if self.by_label:
            body["tools"] = kept
        self.approvals: set[str] = set()  # server tools whose calls wait for approval
        self.tools: list[Tool] = []
        for tool in tools:
            hosted = self.by_label.get(tool.origin.server) if tool.origin else None
            if hosted is not None:
                allowed = _Filter.of(hosted.spec.get("allowed_tools"))
                if allowed is not None and not allowed.matches(tool):
                    continue
                hosted.tools.append(tool)
                if hosted.needs_approval(tool):
                    self.approvals.add(tool.name)
            self.tools.append(tool)
        if self.by_label:
            self._choose(body)

    def _choose(self, body: dict[str, Any]) -> None:
        """A `tool_choice` of a hosted server becomes the function choice the upstream knows."""
        choice = body.get("tool_choice")
        if not (isinstance(choice, dict) and choice.get("type") == "mcp"):
            return
        hosted = self.by_label.get(choice.get("server_label"))  # type: ignore[arg-type]
        if hosted is None:
            return
        name = choice.get("name")
        if name is None:
            body["tool_choice"] = "required"
            return
        chosen = [t.name for t in hosted.tools if t.origin and t.origin.name == name]
        if not chosen:
            raise APIError.of(
                400,
                f"tool_choice names tool {name!r}, which MCP server {hosted.label!r} does not "
                f"offer this request; it offers: "
                f"{', '.join(repr(t.origin.name) for t in hosted.tools if t.origin) or 'none'}",
                param="tool_choice.name",
                code="invalid_value",
            )
        body["tool_choice"] = {"type": "function", "name": chosen[0]}

    @property
    def specs(self) -> list[dict[str, Any]]:
        """The hosted tools as the client sent them, for the response it sees — but for the
        credentials it may have put in them, never echoed."""
        return [
            {k: v for k, v in hosted.spec.items() if k not in _SECRET}
            for hosted in self.by_label.values()
        ]

    def shown(self) -> dict[str, tuple[str, str]]:
        """Each hosted server tool's `server_label` and own name, as the client sees its calls."""
        return {
            tool.name: (hosted.label, tool.origin.name if tool.origin else tool.name)
            for hosted in self.by_label.values()
            for tool in hosted.tools
        }

    def list_items(self, given: list[Any], continued: bool) -> list[dict[str, Any]]:
        """The `mcp_list_tools` items the response starts with: one per hosted server, unless
        the conversation already has its list (in the `given` input, or upstream:
        `continued`)."""
        if continued:
            return []
        listed = {
            item.get("server_label")
            for item in given
            if isinstance(item, dict) and item.get("type") == "mcp_list_tools"
        }
        return [h.list_item() for h in self.by_label.values() if h.label not in listed]
