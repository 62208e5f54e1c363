"""The one response the client sees, built from every upstream round of a Responses request."""

from __future__ import annotations

from typing import Any

from proxy.loop.usage import add_usage
from proxy.responses.calls import Showing


class MergedResponse:
    """Keeps what the client must see across rounds: the first round's id, the visible output
    items in client order, the summed usage, and the latest round's response object."""

    def __init__(
        self, server_tools: frozenset[str], hosted: list[dict[str, Any]] | None = None
    ) -> None:
        self.server_tools = server_tools
        self.hosted = hosted or []  # the request's hosted tools the proxy ran: shown as sent
        self.client_id: str | None = None
        self.first: dict[str, Any] = {}
        self.last: dict[str, Any] = {}
        self.output: dict[int, dict[str, Any]] = {}  # client output_index -> item
        self.next_index = 0
        self.usage: dict[str, Any] | None = None
        self.upstream_id: str | None = None  # the latest round's id, to chain the next one

    def begin(self, response: dict[str, Any]) -> None:
        """A round's response started (`response.created`, or a non-streamed body)."""
        if self.client_id is None:
            self.client_id = response.get("id")
            self.first = response
        self.upstream_id = response.get("id") or self.upstream_id

    def place(self) -> int:
        """Reserve the next client output index."""
        index = self.next_index
        self.next_index += 1
        return index

    def end(self, response: dict[str, Any]) -> None:
        """A round's response finished; its usage counts."""
        self.last = response
        self.upstream_id = response.get("id") or self.upstream_id
        if isinstance(response.get("usage"), dict):
            self.usage = add_usage(self.usage, response["usage"])

    def visible(self, response: dict[str, Any]) -> dict[str, Any]:
        """`response` as the client sees it: one id, its own tools, visible output, all usage."""
        shown = dict(response)
        if self.client_id is not None:
            shown["id"] = self.client_id
        if "previous_response_id" in self.first:
            shown["previous_response_id"] = self.first["previous_response_id"]
        if isinstance(shown.get("tools"), list):
            shown["tools"] = [
                *(
                    t
                    for t in shown["tools"]
                    if not (
                        isinstance(t, dict)
                        and t.get("type") == "function"
                        and t.get("name") in self.server_tools
                    )
                ),
                *self.hosted,
            ]
        return shown

    def final(self, status: str | None = None) -> dict[str, Any]:
        """The last round's response with the merged output and usage."""
        response = self.visible(self.last or self.first)
        response["output"] = [self.output[i] for i in sorted(self.output)]
        if self.usage is not None:
            response["usage"] = self.usage
        if status is not None:
            response["status"] = status
        return response


class Reading:
    """What both readers of rounds keep (`ResponsesStream`, `ResponseReader`): which calls
    are the proxy's and how they are shown, the response being merged, the items the proxy
    starts it with, and the calls it holds for the client's approval."""

    def __init__(
        self,
        showing: Showing,
        hosted: list[dict[str, Any]] | None = None,
        lead: list[dict[str, Any]] | None = None,
    ) -> None:
        """`hosted`: the request's hosted tools the proxy runs (the client sees them in the
        response's `tools`); `lead`: the items the response starts with."""
        self.server_tools = showing.server_tools
        self.showing = showing
        self.merged = MergedResponse(showing.server_tools, hosted)
        self.lead = lead or []
        self.held: dict[str, list[str]] = {}  # approval request id -> tool name, arguments
        self.start_round()

    def start_round(self) -> None:
        """Get ready for an upstream round."""
        raise NotImplementedError
