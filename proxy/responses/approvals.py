"""The client's answers to hosted MCP calls held for approval (`require_approval`).

A held call ends its response as an `mcp_approval_request`; an `mcp_approval_response` in a
later request's `input` runs it — or refuses it — before that request's first round, and the
model reads the result where the call's output belongs. The held call is found in the store
(kept under its request id, so a `previous_response_id` flow works on any replica), or in the
input itself (a client replaying the output it saw). A response answering a request the proxy
never made is left for the upstream; one whose call already ran (its `mcp_call` is in the
input) is dropped, never run twice.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from proxy.responses.calls import APPROVAL_PREFIX, DECLINED, function_call_output, mcp_item
from proxy.tools.runner import ToolCall, ToolResult

RESPONSE = "mcp_approval_response"


def answered_ids(items: Any) -> list[str]:
    """The approval request ids the input answers (for one store lookup)."""
    if not isinstance(items, list):
        return []
    return [
        item["approval_request_id"]
        for item in items
        if isinstance(item, dict)
        and item.get("type") == RESPONSE
        and isinstance(item.get("approval_request_id"), str)
    ]


@dataclass(frozen=True)
class Decision:
    """The client's answer to one held call."""

    request_id: str
    call: ToolCall
    approve: bool
    reason: str | None

    def refused(self) -> ToolResult:
        reason = f": {self.reason}" if self.reason else ""
        return ToolResult(self.call, DECLINED + reason, ok=False)


class Approvals:
    """The decisions a request's input carries, on calls the proxy held."""

    def __init__(
        self,
        items: list[Any],
        names: Mapping[tuple[str, str], str],
        held: Mapping[str, list[str]],
    ) -> None:
        """`names` maps a shown label and name to the tool's name; `held` maps request ids
        to the held call's tool name and arguments, as the store kept them for the response
        this request continues."""
        inline: dict[str, list[str]] = {}
        ran: set[str] = set()  # request ids whose call's `mcp_call` is in the input
        for item in items:
            kind = item.get("type") if isinstance(item, dict) else None
            if kind == "mcp_approval_request" and isinstance(item.get("id"), str):
                name = names.get((item.get("server_label"), item.get("name")))
                if name is not None:
                    inline[item["id"]] = [name, item.get("arguments") or "{}"]
            elif kind == "mcp_call" and isinstance(item.get("approval_request_id"), str):
                ran.add(item["approval_request_id"])
        self.settled = ran & ({*held, *inline})  # answered, and run: never again
        self.decisions: list[Decision] = []
        self.unresolved: list[tuple[int, str]] = []  # (input index, id): no such held call
        for index, item in enumerate(items):
            if not (isinstance(item, dict) and item.get("type") == RESPONSE):
                continue
            request_id: str = item["approval_request_id"]  # required: `request_checks`
            call = held.get(request_id) or inline.get(request_id)  # the proxy's own record first
            if request_id in self.settled or any(
                d.request_id == request_id for d in self.decisions
            ):
                continue
            if call is None:
                if request_id not in ran:
                    self.unresolved.append((index, request_id))
                continue
            name, arguments = call[:2]
            tool_call = ToolCall(request_id.removeprefix(APPROVAL_PREFIX), name, arguments)
            reason = item.get("reason")
            self.decisions.append(
                Decision(request_id, tool_call, item.get("approve") is True, reason)
            )
        decided = {d.request_id for d in self.decisions}
        # Held calls the client replays without an answer: the model reads they did not run.
        self.unanswered = frozenset(inline) - decided - ran

    def approved(self, available: Collection[str]) -> list[ToolCall]:
        """The calls to run before the first round: approved, of tools the request may use."""
        return [d.call for d in self.decisions if d.approve and d.call.name in available]

    def outputs(self, results: Mapping[str, ToolResult]) -> dict[str, dict[str, Any]]:
        """Each decision's `function_call_output`, by request id: the result of an approved
        call that ran (`results`, by call id), the refusal of another."""
        return {
            d.request_id: function_call_output(self._result(d, results)) for d in self.decisions
        }

    @staticmethod
    def _result(decision: Decision, results: Mapping[str, ToolResult]) -> ToolResult:
        if not decision.approve:
            return decision.refused()
        call = decision.call
        unavailable = f"error: no tool named {call.name!r} is available"
        return results.get(call.id) or ToolResult(call, unavailable, ok=False)

    def rewrite(self, items: list[Any], outputs: Mapping[str, dict[str, Any]]) -> list[Any]:
        """`items` with each answer the proxy took in place of the client's response item,
        and the responses to calls that already ran taken out."""
        rewritten: list[Any] = []
        placed: set[str] = set()  # an answer given twice goes upstream once
        for item in items:
            if not (isinstance(item, dict) and item.get("type") == RESPONSE):
                rewritten.append(item)
                continue
            request_id = item["approval_request_id"]
            if request_id in outputs:
                if request_id not in placed:
                    rewritten.append(outputs[request_id])
                    placed.add(request_id)
            elif request_id not in self.settled:
                rewritten.append(item)  # not the proxy's: the upstream's to judge
        return rewritten

    def shown(
        self, results: Mapping[str, ToolResult], shown_as: Mapping[str, tuple[str, str]]
    ) -> list[dict[str, Any]]:
        """The `mcp_call` items the response starts with: the approved calls that ran."""
        return [
            mcp_item(d.call, results[d.call.id], shown_as[d.call.name], d.request_id)
            for d in self.decisions
            if d.approve and d.call.id in results and d.call.name in shown_as
        ]
