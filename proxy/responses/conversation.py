"""The Responses dialect: tools injected into the request, and each next round asked for either
by replaying the input with the round's output, or by chaining on the upstream's stored state."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from proxy.errors import APIError
from proxy.loop.round import RoundOutcome
from proxy.loop.tool_choice import relaxed
from proxy.request_checks import RESPONSES_REQUEST, checked
from proxy.responses.approvals import Approvals
from proxy.responses.calls import (
    SERVER_LABEL,
    Showing,
    function_call_output,
    is_server_call,
    label_of,
    unfold_mcp_items,
)
from proxy.responses.hosted import HostedMCP
from proxy.responses.memory import Remembrance, anchor_of
from proxy.responses.result import ResponseReader
from proxy.responses.stream import ResponsesStream
from proxy.tools.registry import Registry
from proxy.tools.runner import ToolCall, ToolResult


def check_request(body: Any) -> dict[str, Any]:
    """The request body as a dict, or OpenAI's 400 naming a value the proxy cannot read."""
    return checked(body, RESPONSES_REQUEST)


def client_tool_names(body: dict[str, Any]) -> set[str]:
    return {
        spec["name"]
        for spec in body.get("tools") or []
        if isinstance(spec, dict) and isinstance(spec.get("name"), str)
    }


class ResponsesConversation:
    """One `/responses` request across its rounds (implements `Conversation`)."""

    path = "/responses"

    def __init__(
        self,
        body: dict[str, Any],
        registry: Registry,
        show_calls: bool,
        servers: Collection[str] = (),
        held: Mapping[str, list[str]] | None = None,
    ) -> None:
        """`servers`: those the tool providers connect to, which hosted `mcp` tools may name;
        `held`: the calls held for approval that the input answers, as the store kept them."""
        claimed = client_tool_names(body)
        available = (entry.tool for name, entry in registry.items() if name not in claimed)
        self.hosted = hosted = HostedMCP(body, available, servers)
        if hosted.by_label and body.get("background"):
            raise APIError.of(
                400,
                "A background response cannot use the MCP servers the proxy runs "
                f"({', '.join(map(repr, hosted.by_label))}): leave out 'background'.",
                param="background",
            )
        tools = hosted.tools
        self.server_tools = frozenset(t.name for t in tools)
        self.showing = Showing(
            self.server_tools,
            {**({t.name: label_of(t) for t in tools} if show_calls else {}), **hosted.shown()},
            frozenset(hosted.approvals),
        )
        if tools:
            body["tools"] = [
                *(body.get("tools") or []),
                *(t.responses_tool for t in tools),
            ]
        self.body = body
        self.streaming = bool(body.get("stream"))
        # Upstream state: chain rounds on it rather than replaying the whole input.
        self.conversation = body.get("conversation") is not None
        continued = self.conversation or body.get("previous_response_id") is not None
        self.chained = continued or body.get("store") is True
        raw_input = body.get("input")
        given = raw_input if isinstance(raw_input, list) else []
        self.approvals = self._take_back(given, registry, {SERVER_LABEL, *servers}, held or {})
        lead = hosted.list_items(given, continued)
        if body.get("store") is False and not self.chained:
            # Replayed reasoning items must carry their content: nothing is stored upstream.
            include = body.get("include") or []
            if "reasoning.encrypted_content" not in include:
                body["include"] = [*include, "reasoning.encrypted_content"]
        self.history: list[Any] = []
        self.transcript: list[dict[str, Any]] = []  # every round's items, hidden ones too
        self.outputs: dict[str, dict[str, Any]] = {}  # call id -> its function_call_output
        self.unsent: list[dict[str, Any]] = []  # outputs of a mixed round, never sent upstream
        self.next_input: list[Any] | None = None
        reader = ResponsesStream if self.streaming else ResponseReader
        self.reader: ResponsesStream | ResponseReader = reader(self.showing, hosted.specs, lead)

    def _take_back(
        self,
        given: list[Any],
        registry: Registry,
        labels: set[str],
        held: Mapping[str, list[str]],
    ) -> Approvals:
        """Unfold the items of the proxy's own `labels` the input carries (any tool this
        client may use, offered in this request or not), and find the approvals in it."""
        names: dict[tuple[str, str], str] = {}
        if any(isinstance(i, dict) and str(i.get("type")).startswith("mcp_") for i in given):
            tools = [entry.tool for entry in registry.values()]  # walked only when needed
            names = {
                **{(SERVER_LABEL, t.name): t.name for t in tools},
                **{label_of(t): t.name for t in tools},
            }
        approvals = Approvals(given, names, held)
        upstream_mcp = any(  # among the client's tools (the proxy's come encoded)
            isinstance(spec, dict) and spec.get("type") == "mcp"
            for spec in self.body.get("tools") or []
        )
        if approvals.unresolved and labels != {SERVER_LABEL} and not upstream_mcp:
            # the proxy runs MCP servers, and the answer is to none of the upstream's
            index, request_id = approvals.unresolved[0]
            raise APIError.of(
                400,
                f"No MCP approval request {request_id!r} is waiting for an answer: it belongs "
                "to another response than the one this request continues "
                "('previous_response_id'), it expired, or it was never made.",
                param=f"input[{index}].approval_request_id",
                code="invalid_value",
            )
        if given:
            unfolded = unfold_mcp_items(given, names, labels, approvals.unanswered)
            self.body["input"] = approvals.rewrite(unfolded, {})
        return approvals

    @property
    def intercepts(self) -> bool:
        """Whether server tools take part: background responses have no stream to act on."""
        return bool(self.server_tools or self.hosted.by_label) and not self.body.get("background")

    @property
    def approved(self) -> list[ToolCall]:
        """The held calls the input approves, to run (`decide`) before the first round."""
        return self.approvals.approved(self.server_tools)

    def decide(self, results: list[ToolResult]) -> None:
        """Take the results of the `approved` calls: each answer goes where the client's
        approval response was, and the approved calls that ran start the response."""
        by_call = {result.call.id: result for result in results}
        outputs = self.approvals.outputs(by_call)
        if outputs:
            self.body["input"] = self.approvals.rewrite(self.body["input"], outputs)
            self.reader.lead += self.approvals.shown(by_call, self.showing.shown)

    def request(self) -> dict[str, Any]:
        if self.next_input is None:
            return self.body
        body = {**self.body, "input": self.next_input}
        if self.chained and not self.conversation:
            body["previous_response_id"] = self.reader.merged.upstream_id
        return body

    def feed(self, data: bytes) -> bytes:
        return self.reader.feed(data)

    def end_round(self) -> RoundOutcome:
        outcome = self.reader.end_round()
        self.transcript += self.reader.round_items()
        return outcome

    def add_results(
        self, outcome: RoundOutcome, results: list[ToolResult], *, last: bool
    ) -> list[bytes]:
        outputs = [function_call_output(result) for result in results]
        self.outputs.update((output["call_id"], output) for output in outputs)
        if outcome.client_calls:
            self.unsent = outputs
        if self.chained:
            self.next_input = outputs
        else:
            self.history += [*self.reader.round_items(), *outputs]
            self.next_input = [*_as_items(self.body.get("input")), *self.history]
        if last:
            self.body["tool_choice"] = "none"
        elif self.body.get("tool_choice") is not None:
            self.body["tool_choice"] = relaxed(self.body["tool_choice"])
        frames = self.reader.show_results(results)
        if not outcome.client_calls:  # a mixed round ends here: finish() still needs it
            self.reader.start_round()
        return frames

    def remembrance(self) -> Remembrance:
        """What a later request needs to continue this response (see `ResponsesMemory`)."""
        memo = Remembrance(self.client_id, self.upstream_id, self.unsent, held=self.reader.held)
        if self.chained:
            return memo  # the upstream holds the items
        anchor: str | None = None  # the last item the client saw
        leading: list[dict[str, Any]] = []  # hidden items before any the client saw
        for item in self.transcript:
            call_id = item.get("call_id")
            shown = self.showing.shown_id(item)
            if shown is not None:  # the client got it as an mcp item, and replays that
                anchor = shown
                if leading:
                    memo.before[anchor], leading = leading, []
            elif is_server_call(item, self.server_tools) and call_id in self.outputs:
                hidden = [item, self.outputs[call_id]]
                if anchor is None:
                    leading += hidden
                else:
                    memo.after.setdefault(anchor, []).extend(hidden)
            elif (visible := anchor_of(item)) is not None:
                anchor = visible
                if leading:
                    memo.before[anchor], leading = leading, []
        return memo

    def finish(self) -> list[bytes]:
        return self.reader.finish()

    def fail(self, message: str, code: str) -> list[bytes]:
        return self.reader.fail(message, code)

    @property
    def client_id(self) -> str | None:
        return self.reader.merged.client_id

    @property
    def upstream_id(self) -> str | None:
        return self.reader.merged.upstream_id


def _as_items(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    return list(value)
