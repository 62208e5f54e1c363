"""Reading non-streamed Responses rounds, and merging them into the response the client gets."""

from __future__ import annotations

from typing import Any

import orjson

from proxy.errors import APIError
from proxy.loop.round import RoundOutcome
from proxy.responses.calls import HiddenCall, awaits_client, is_server_call
from proxy.responses.merged import Reading
from proxy.tools.runner import ToolResult


class ResponseReader(Reading):
    """The non-streaming counterpart of `ResponsesStream`: same loop, one JSON body per round."""

    def start_round(self) -> None:
        self.body = bytearray()
        self.items: list[dict[str, Any]] = []
        self.hidden: list[tuple[int | None, HiddenCall]] = []

    def feed(self, data: bytes) -> bytes:
        self.body += data
        return b""

    def end_round(self) -> RoundOutcome:
        try:
            response = orjson.loads(self.body)
            output = response["output"]
            if not isinstance(output, list):
                raise TypeError("output is not a list")
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise APIError.of(
                502,
                "the upstream API sent a body that is not a response: "
                + bytes(self.body[:300]).decode("utf-8", "replace"),
                "server_error",
                code="bad_upstream_response",
            ) from exc
        self.merged.begin(response)
        self.merged.end(response)
        self.items = output
        for item in self.lead:  # the items the proxy starts the response with
            self.merged.output[self.merged.place()] = item
        self.lead = []
        client_calls = 0
        for item in output:
            if is_server_call(item, self.server_tools):
                hidden = HiddenCall.of(item, self.showing)
                hidden.finish(item)
                place = None
                if hidden.shown_as is not None:
                    place = self.merged.place()
                    shown = self.merged.output[place] = hidden.shown(None)
                if hidden.approval:
                    self.held[shown["id"]] = [hidden.call.name, hidden.call.arguments]
                    client_calls += 1
                    continue
                self.hidden.append((place, hidden))
            else:
                self.merged.output[self.merged.place()] = item
                client_calls += awaits_client(item, self.server_tools)
        return RoundOutcome(
            server_calls=[hidden.call for _, hidden in self.hidden], client_calls=client_calls
        )

    def round_items(self) -> list[dict[str, Any]]:
        return self.items

    def show_results(self, results: list[ToolResult]) -> list[bytes]:
        by_call = {r.call.id: r for r in results}
        for place, hidden in self.hidden:
            if place is not None:
                self.merged.output[place] = hidden.shown(by_call.get(hidden.call.id))
        return []

    def finish(self) -> list[bytes]:
        for place, _ in self.hidden:  # shown calls that never ran (round limit)
            if place is not None and self.merged.output[place]["status"] == "in_progress":
                self.merged.output[place]["status"] = "incomplete"
        return [orjson.dumps(self.merged.final())]

    def fail(self, message: str, code: str) -> list[bytes]:  # pragma: no cover - never sent
        raise AssertionError("a non-streaming response has nothing sent before it ends")
