"""Stitching the rounds of a streamed Responses request into the one event stream the client
sees. Sans-I/O: upstream SSE bytes in, client SSE bytes out.

The client sees one `response.created`/`.in_progress` (the first round's), every event of the
visible items with `output_index` renumbered without gaps, `sequence_number` counting from 0,
and one terminal event whose response lists the visible items and the summed usage. Server
calls are hidden from `output_item.added` to `output_item.done` — or shown as `mcp_call`, or,
held for approval, as an `mcp_approval_request` once its arguments are known. Items the proxy
itself starts the response with (`mcp_list_tools`, approved calls run) come right after the
response's start.
"""

from __future__ import annotations

from typing import Any

import orjson

from proxy.loop.round import RoundOutcome
from proxy.responses.calls import HiddenCall, awaits_client, is_server_call
from proxy.responses.merged import Reading
from proxy.sse import SSEDecoder, encode
from proxy.tools.runner import ToolResult

_STARTS = frozenset({"response.created", "response.in_progress", "response.queued"})
_ENDS = frozenset({"response.completed", "response.incomplete"})
_DELTA = b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'


class ResponsesStream(Reading):
    """One client stream, across every upstream round of the request."""

    sequence = 0  # of the client's events
    round_no = 0

    def start_round(self) -> None:
        self.round_no += 1
        self.decoder = SSEDecoder()
        self.indices: dict[int, int] = {}  # upstream output_index -> client output_index
        self.hidden: dict[int, HiddenCall] = {}  # upstream output_index -> server call
        self.items: dict[int, dict[str, Any]] = {}  # this round's finished items, for replay
        self.by_id: dict[str, int] = {}  # item id -> upstream output_index
        self.added = 0  # items added this round, with an id or not
        self.terminal: str | None = None
        self.failed = False  # a terminal failure: nothing after it matters
        self.errored = False  # an `error` event reached the client

    # -- upstream events in ----------------------------------------------------------------

    def feed(self, data: bytes) -> bytes:
        if self.lead:
            return self._events(data)
        at = self._plain_deltas(data, 0)
        if at == len(data):
            return data  # the hot path: text deltas that need no change, not parsed
        # A burst: text deltas that need no change go out unparsed; the events around them
        # (an item added, an annotation, a delta to renumber, the start of an event the next
        # read ends) are read one by one.
        out = [data[:at]]
        while at < len(data):
            start = at if data.startswith(_DELTA, at) else data.find(b"\n\n" + _DELTA, at) + 2
            if start == 1:  # no text delta starts in the rest
                out.append(self._events(data[at:]))
                break
            if start > at:
                out.append(self._events(data[at:start]))
            end = self._plain_deltas(data, start)
            if end == start:  # this one is read: up to its end, or all there is of it
                end = data.find(b"\n\n", start) + 2
                end = end if end > 1 else len(data)
                out.append(self._events(data[start:end]))
            else:
                out.append(data[start:end])
            at = end
        return b"".join(out)

    def _events(self, data: bytes) -> bytes:
        return b"".join(
            frame for event in self.decoder.feed(data) for frame in self._event(event.data)
        )

    def _plain_deltas(self, data: bytes, start: int) -> int:
        """Where the whole `response.output_text.delta` events from `start` on end that need
        no change — each of a visible item whose `output_index` and `sequence_number` are
        already the client's — counted as sent."""
        if self.failed or self.lead or not self.decoder.idle:
            return start
        at = start
        while data.startswith(_DELTA, at):
            end = data.find(b"}\n\n", at) + 3
            if end < 3:
                break  # torn: the next read ends it
            event = data[at:end]
            if event.count(b"\n") != 3 or b"\r" in event:
                break  # not one `data:` line
            index = _number_after(event, b'"output_index":')
            if (
                index is None
                or index in self.hidden
                or self.indices.get(index, index) != index
                or _number_after(event, b'"sequence_number":') != self.sequence
            ):
                break
            self.sequence += 1
            at = end
        return at

    def end_round(self) -> RoundOutcome:
        tail = [frame for event in self.decoder.close() for frame in self._event(event.data)]
        for hidden in self.hidden.values():  # held calls of an upstream sending no `.done`
            if hidden.approval and not hidden.shown_done:
                tail += self._ask(hidden)
        calls = [hidden.call for hidden in self.hidden.values() if not hidden.approval]
        client_calls = sum(
            1
            for oi, item in self.items.items()
            if oi not in self.hidden and awaits_client(item, self.server_tools)
        ) + sum(hidden.approval for hidden in self.hidden.values())  # held: the client answers
        failed = self.failed or self.errored
        cut_short = self.terminal is None and not failed
        return RoundOutcome(
            server_calls=[] if failed or cut_short else calls,
            client_calls=client_calls,
            failed=failed,
            tail=tail,
            error="the upstream stream ended before the response completed" if cut_short else None,
        )

    def round_items(self) -> list[dict[str, Any]]:
        """This round's output items in upstream order, every field kept (for replay)."""
        return [self.items[i] for i in sorted(self.items)]

    def _event(self, data: bytes) -> list[bytes]:
        if self.failed:
            return []
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            return [encode(data)]
        if not isinstance(event, dict):
            return [encode(data)]
        kind = event.get("type")
        if not isinstance(kind, str):
            return [encode(data)]
        if kind in _STARTS:
            response = event.get("response") or {}
            if kind == "response.created":
                self.merged.begin(response)
            if self.round_no > 1:
                return []  # the client already saw its response start
            event["response"] = self.merged.visible(response)
            started = [self._emit(event)]
            return [*started, *self._lead()] if kind == "response.in_progress" else started
        if self.lead:
            return [*self._lead(), *self._event(data)]
        if kind in _ENDS:
            response = event.get("response") or {}
            self.merged.end(response)
            self.terminal = kind
            for i, item in enumerate(response.get("output") or []):
                self.items[i] = item  # the terminal response's items are authoritative
                if i in self.indices:
                    self.merged.output[self.indices[i]] = item
            return []
        if kind == "response.failed":
            self.merged.end(event.get("response") or {})
            self.failed = True
            return [self._emit({**event, "response": self.merged.final()})]
        if kind == "error":
            self.errored = True  # the `response.failed` that follows is passed on too
            return [self._emit(event)]
        index = event.get("output_index")
        if not isinstance(index, int):
            index = self._index_by_id(kind, event)
            if index is None:
                return [self._emit(event)]  # not about an output item: pass it on
        if kind == "response.output_item.added":
            return self._item_added(index, event)
        if index in self.hidden:
            return self._hidden_event(index, kind, event)
        if kind == "response.output_item.done":
            item = event.get("item") or {}
            self.items[index] = item
            if index in self.indices:
                self.merged.output[self.indices[index]] = item
        client_index = self.indices.get(index, index)
        if client_index == index and event.get("sequence_number") == self.sequence:
            self.sequence += 1  # nothing to renumber: the upstream's bytes go out as they came
            return [encode(data, kind.encode())]
        event["output_index"] = client_index
        return [self._emit(event)]

    def _index_by_id(self, kind: str, event: dict[str, Any]) -> int | None:
        """The output_index of an event that carries none (llama.cpp): that of its item,
        known by id; a new item is numbered in the order the items were added."""
        if kind == "response.output_item.added":
            return self.added
        item = event.get("item")
        item_id = item.get("id") if isinstance(item, dict) else event.get("item_id")
        return self.by_id.get(item_id) if isinstance(item_id, str) else None

    def _item_added(self, index: int, event: dict[str, Any]) -> list[bytes]:
        self.added += 1
        item = event.get("item") or {}
        if isinstance(item.get("id"), str):
            self.by_id[item["id"]] = index
        if is_server_call(item, self.server_tools):
            hidden = self.hidden[index] = HiddenCall.of(item, self.showing)
            if hidden.shown_as is None or hidden.approval:
                return []  # hidden; or shown whole once its arguments are known
            hidden.client_index = self.merged.place()
            shown = hidden.shown(None)
            self.merged.output[hidden.client_index] = shown
            return [
                self._emit_item("response.output_item.added", hidden.client_index, shown),
                self._emit_about("response.mcp_call.in_progress", hidden.client_index, shown),
            ]
        self.indices[index] = client_index = self.merged.place()
        self.merged.output[client_index] = item
        event["output_index"] = client_index
        return [self._emit(event)]

    def _hidden_event(self, index: int, kind: str, event: dict[str, Any]) -> list[bytes]:
        hidden = self.hidden[index]
        shown = hidden.client_index
        if kind == "response.function_call_arguments.delta":
            delta = event.get("delta") or ""
            hidden.parts.append(delta)
            if shown is not None and delta:
                item_id = self.merged.output[shown]["id"]
                return [
                    self._emit(
                        {
                            "type": "response.mcp_call_arguments.delta",
                            "item_id": item_id,
                            "output_index": shown,
                            "delta": delta,
                        }
                    )
                ]
        elif kind == "response.function_call_arguments.done":
            if isinstance(event.get("arguments"), str):
                hidden.arguments = event["arguments"]
        elif kind == "response.output_item.done":
            hidden.finish(event.get("item") or {})
            self.items[index] = hidden.item
            if hidden.approval:
                return self._ask(hidden)
            if shown is not None:
                self.merged.output[shown] = hidden.shown(None)
                return [
                    self._emit(
                        {
                            "type": "response.mcp_call_arguments.done",
                            "item_id": self.merged.output[shown]["id"],
                            "output_index": shown,
                            "arguments": hidden.call.arguments,
                        }
                    )
                ]
        return []

    # -- the proxy's own output ------------------------------------------------------------

    def _ask(self, hidden: HiddenCall) -> list[bytes]:
        """Show a held call, whole, as the `mcp_approval_request` the client answers."""
        index = hidden.client_index = self.merged.place()
        hidden.shown_done = True
        item = self.merged.output[index] = hidden.shown(None)
        self.held[item["id"]] = [hidden.call.name, hidden.call.arguments]
        return [
            self._emit_item("response.output_item.added", index, item),
            self._emit_item("response.output_item.done", index, item),
        ]

    def _lead(self) -> list[bytes]:
        """The items the proxy starts the response with, each with its events."""
        frames: list[bytes] = []
        for item in self.lead:
            index = self.merged.place()
            self.merged.output[index] = item
            kind = item["type"]  # mcp_list_tools, or mcp_call
            status = "completed" if item.get("error") is None else "failed"
            frames += [
                self._emit_item("response.output_item.added", index, item),
                self._emit_about(f"response.{kind}.in_progress", index, item),
                self._emit_about(f"response.{kind}.{status}", index, item),
                self._emit_item("response.output_item.done", index, item),
            ]
        self.lead = []
        return frames

    def show_results(self, results: list[ToolResult]) -> list[bytes]:
        """Complete the `mcp_call` items of this round's calls with their outputs."""
        frames: list[bytes] = []
        by_call = {r.call.id: r for r in results}
        for hidden in self.hidden.values():
            result = by_call.get(hidden.call.id)
            if hidden.client_index is None or hidden.shown_done or result is None:
                continue  # hidden, held for approval, or not run
            frames.extend(self._close_shown(hidden, result))
        return frames

    def _close_shown(self, hidden: HiddenCall, result: ToolResult | None) -> list[bytes]:
        assert hidden.client_index is not None
        hidden.shown_done = True
        item = hidden.shown(result)
        if result is None:
            item["status"] = "incomplete"
        self.merged.output[hidden.client_index] = item
        kind = (
            "response.mcp_call.completed"
            if item["status"] == "completed"
            else ("response.mcp_call.failed")
        )
        return [
            self._emit_about(kind, hidden.client_index, item),
            self._emit_item("response.output_item.done", hidden.client_index, item),
        ]

    def finish(self) -> list[bytes]:
        frames = self._lead()  # an empty response still starts with them
        for hidden in self.hidden.values():  # shown calls that never ran (round limit)
            if hidden.client_index is not None and not hidden.shown_done:
                frames.extend(self._close_shown(hidden, None))
        kind = self.terminal if self.terminal in _ENDS else "response.completed"
        frames.append(self._emit({"type": kind, "response": self.merged.final()}))
        return frames

    def fail(self, message: str, code: str) -> list[bytes]:
        response = self.merged.final(status="failed")
        response["error"] = {"code": code, "message": message}
        return [self._emit({"type": "response.failed", "response": response})]

    def _emit_item(self, kind: str, index: int, item: dict[str, Any]) -> bytes:
        return self._emit({"type": kind, "output_index": index, "item": item})

    def _emit_about(self, kind: str, index: int, item: dict[str, Any]) -> bytes:
        return self._emit({"type": kind, "item_id": item["id"], "output_index": index})

    def _emit(self, event: dict[str, Any]) -> bytes:
        event["sequence_number"] = self.sequence
        self.sequence += 1
        kind = event.get("type")
        name = kind.encode() if isinstance(kind, str) else b""
        return encode(orjson.dumps(event), name)


def _number_after(data: bytes, key: bytes) -> int | None:
    """The integer that follows `key` (a top-level key: inside a JSON string it would come
    escaped), when it appears exactly once."""
    start = data.find(key)
    if start == -1 or data.find(key, start + 1) != -1:
        return None
    start += len(key)
    end = start
    while data[end : end + 1].isdigit():
        end += 1
    return int(data[start:end]) if end > start else None
