"""Stitching the rounds of a streamed chat completion into the one stream the client sees.

Sans-I/O: fed the upstream's SSE bytes, it returns SSE bytes for the client. Content and
every unknown field pass through as soon as they arrive — a chunk it need not change goes out
as the very bytes it came in as. Fragments of server calls are hidden; client calls are
renumbered 0, 1, 2 …; the role delta, the completion id and the finish come once.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from proxy.chat.calls import Call, Fragment
from proxy.chat.message import MessageAccumulator
from proxy.loop.round import RoundOutcome
from proxy.loop.usage import add_usage
from proxy.sse import SSEDecoder, encode

DONE = b"data: [DONE]\n\n"


class ChatStream:
    """One client stream, across every upstream round of the request."""

    def __init__(self, server_tools: frozenset[str], include_usage: bool) -> None:
        self.server_tools = server_tools
        self.include_usage = include_usage
        self.client_id: str | None = None
        self.role_sent = False
        self.usage: dict[str, Any] | None = None
        self.finish_template: dict[str, Any] | None = None
        self.last_chunk: dict[str, Any] = {}
        self.client_token: bytes | None = None  # the client's `"id":"…"` as upstream spells it
        self.start_round()

    # -- one round -------------------------------------------------------------------------

    def start_round(self) -> None:
        self.decoder = SSEDecoder()
        self.message = MessageAccumulator()
        self.visible: dict[int, int] = {}  # id(call) -> index the client sees
        self.finish_reason: str | None = None
        self.round_usage: dict[str, Any] | None = None
        self.round_token: bytes | None = None  # this round's `"id":"…"`, when not the client's
        self.pending: list[bytes] = []  # plain chunks' frames, parsed only if the round needs
        self.failed = False
        self.done = False

    def feed(self, data: bytes) -> bytes:
        if self._plain_read(data):
            return self._pass(data)
        # A burst: the end of a frame the last read started, a chunk to look at (the role,
        # say), plain chunks, the start of a frame the next read ends. The plain ones in the
        # middle still pass unread.
        out = b""
        if not self.decoder.idle:
            cut = data.find(b"\n\n") + 2
            if cut < 2:
                return self._events(data)
            out, data = self._events(data[:cut]), data[cut:]
        end = data.rfind(b"\n\n") + 2
        whole, torn = (data[:end], data[end:]) if end >= 2 else (b"", data)
        if self._plain_read(whole):
            out += self._pass(whole)
        elif whole:
            cut = whole.find(b"\n\n") + 2
            rest = whole[cut:]
            out += self._events(whole[:cut])
            out += self._pass(rest) if self._plain_read(rest) else self._events(rest)
        return out + self._events(torn) if torn else out

    def _pass(self, data: bytes) -> bytes:
        """Whole plain content chunks: forwarded as they came (their id renamed in later
        rounds), read later and only if the round ends with calls to run. The hot path: a few
        scans in C, no parsing."""
        if self.round_token is not None and self.client_token is not None:
            data = data.replace(self.round_token, self.client_token)
        self.pending.append(data)
        return data

    def _events(self, data: bytes) -> bytes:
        return b"".join(
            frame
            for event in self.decoder.feed(data)
            if (frame := self._event(event.data)) is not None
        )

    def _plain_read(self, data: bytes) -> bool:
        """Whether `data` is whole `data: {…}` frames, each a plain chunk under this round's
        id."""
        token = self.round_token or self.client_token
        if token is None or self.done or self.failed or not self.decoder.idle:
            return False
        frames = data.count(b"\n\n")
        return (
            frames > 0
            and data.endswith(b"\n\n")
            and data.startswith(b"data: ")
            and data.count(b"\n") == 2 * frames  # one line per frame…
            and data.count(b"\n\ndata: ") == frames - 1  # …and each a `data:` line
            and b"\r" not in data
            and data.count(token) == frames
            and _NOT_PLAIN.search(data) is None
        )

    def end_round(self) -> RoundOutcome:
        tail = [
            frame
            for event in self.decoder.close()
            if (frame := self._event(event.data)) is not None
        ]
        if self.round_usage is not None:
            self.usage = add_usage(self.usage, self.round_usage)
            self.round_usage = None
        server = self.message.server_calls(self.server_tools)
        if server:
            self._parse_pending()  # the next round needs every field the model wrote
        # Cut short: before the finish, or inside a frame (the usage chunk, say) after it.
        cut_short = not (self.done or self.failed) and (
            self.finish_reason is None or self.decoder.torn
        )
        return RoundOutcome(
            server_calls=server,
            client_calls=len(self.visible),
            failed=self.failed,
            tail=tail,
            error="the upstream stream ended before the completion did" if cut_short else None,
        )

    def _event(self, data: bytes) -> bytes | None:
        if data == b"[DONE]":
            self.done = True
            return None
        if self.done or self.failed:
            return None
        if self._plain_frame(data):
            # Content only, as in `feed`'s fast path, for a frame that came torn or in company.
            return self._pass(encode(data))
        self._parse_pending()
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return encode(data)  # not ours to judge: pass it on
        if not isinstance(chunk, dict):
            return encode(data)
        if "error" in chunk and "choices" not in chunk:
            self.failed = True  # the upstream's own error event: pass it on, then stop
            return encode(data)
        chunk_id = chunk.get("id")
        if isinstance(chunk_id, str) and chunk_id:
            self._learn_id(chunk_id, data)
        changed = self._chunk(chunk)
        if changed is None:
            return None
        return encode(orjson.dumps(chunk)) if changed else encode(data)

    def _plain_frame(self, data: bytes) -> bool:
        """Whether one event's data is a plain chunk under the client's or this round's id."""
        if self.client_token is None or b"\n" in data or not _plain(data):
            return False
        return self.client_token in data or (
            self.round_token is not None and self.round_token in data
        )

    def _learn_id(self, chunk_id: str, data: bytes) -> None:
        """Note how the upstream spells `"id":"…"`, so plain chunks need no parsing."""
        if self.client_token is not None and self.round_token is not None:
            return
        for separator in (b":", b": "):
            token = b'"id"' + separator + orjson.dumps(chunk_id)
            if token not in data:
                continue
            if self.client_id in (None, chunk_id):
                self.client_token = token
            elif self.round_token is None:
                self.round_token = token
                self.client_token = b'"id"' + separator + orjson.dumps(self.client_id)
            return

    def _parse_pending(self) -> None:
        for frames in self.pending:
            for frame in frames.split(b"\n\n"):
                if frame:
                    chunk = orjson.loads(frame[6:])  # after `data: `
                    for choice in chunk.get("choices") or []:
                        self.message.add_fields(choice.get("delta") or {})
        self.pending.clear()

    def _chunk(self, chunk: dict[str, Any]) -> bool | None:
        """Rewrite `chunk` in place for the client: True if changed, None to drop it."""
        changed = False
        chunk_id = chunk.get("id")
        if chunk_id:
            if self.client_id is None:
                self.client_id = chunk_id
            elif chunk_id != self.client_id:
                chunk["id"] = self.client_id
                changed = True
        if chunk.get("usage"):
            self.round_usage = chunk.pop("usage")  # some providers repeat it: the last counts
            changed = True
        choices = chunk.get("choices")
        if not choices:
            if changed and choices is not None and not _meaningful(chunk):
                return None  # a usage-only chunk: the summed usage goes out at the end
            self.last_chunk = chunk
            return changed
        self.last_chunk = chunk
        choice = choices[0]
        delta = choice.get("delta") or {}
        if "role" in delta:
            if self.role_sent:
                del delta["role"]
                changed = True
            else:
                self.role_sent = True
        self.message.add_fields(delta)
        if delta.get("tool_calls"):
            visible = [self._tool_call(raw) for raw in delta["tool_calls"]]
            shown = [part for part in visible if part is not None]
            if shown:
                delta["tool_calls"] = shown
            else:
                del delta["tool_calls"]
            changed = True
        if delta.get("function_call"):
            self.message.legacy = True
            part = self._tool_call({"index": "legacy", "function": delta["function_call"]})
            if part is None:
                del delta["function_call"]
            else:
                delta["function_call"] = part["function"]
            changed = True
        if choice.get("finish_reason") is not None:
            self.finish_reason = choice["finish_reason"]
            self.finish_template = {
                **chunk,
                "choices": [{**choice, "delta": {}, "logprobs": None}],
            }
            choice["finish_reason"] = None
            changed = True
        if changed and not _meaningful_choice(choice):
            return None
        return changed

    def _tool_call(self, raw: dict[str, Any]) -> dict[str, Any] | None:
        """Attribute a fragment; return what the client should see of it, or None."""
        fragment = self.message.calls.add(raw)
        call = fragment.call
        if not call.name or call.name in self.server_tools:
            return None  # hidden (or not yet known to be the client's)
        index = self.visible.get(id(call))
        if index is None:
            index = self.visible[id(call)] = len(self.visible)
            return _announce(call, index)
        return _continuation(fragment, index)

    # -- the end of the client's stream ----------------------------------------------------

    def finish(self) -> list[bytes]:
        reason = self.finish_reason or "stop"
        if self.visible:
            reason = "function_call" if self.message.legacy else "tool_calls"
        elif reason in ("tool_calls", "function_call"):
            reason = "stop"  # the calls were ours, and there is no round after this one
        template = self.finish_template or {
            key: self.last_chunk[key]
            for key in ("object", "created", "model", "system_fingerprint")
            if key in self.last_chunk
        } | {"choices": [{"index": 0, "delta": {}, "logprobs": None}]}
        template["id"] = self.client_id or template.get("id", "")
        template["choices"][0]["finish_reason"] = reason
        frames = [encode(orjson.dumps(template))]
        if self.include_usage and self.usage is not None:
            usage_chunk = {
                key: template[key]
                for key in ("id", "object", "created", "model", "system_fingerprint")
                if key in template
            } | {"choices": [], "usage": self.usage}
            frames.append(encode(orjson.dumps(usage_chunk)))
        frames.append(DONE)
        return frames

    def fail(self, message: str, code: str) -> list[bytes]:
        error = {"error": {"message": message, "type": "server_error", "param": None, "code": code}}
        return [encode(orjson.dumps(error))]


# A chunk with none of these needs no rewrite: no role, no call, no usage, no finish, no error.
# (One scan in C costs less than parsing the chunk.)
_NOT_PLAIN = re.compile(
    rb'"(?:role|tool_calls|function_call|error)"|"(?:finish_reason|usage)":(?!null)'
)


def _plain(data: bytes) -> bool:
    return _NOT_PLAIN.search(data) is None


def _announce(call: Call, index: int) -> dict[str, Any]:
    return {
        **call.extra,
        "index": index,
        "id": call.id,
        "type": call.type,
        "function": {**call.function_extra, "name": call.name, "arguments": call.arguments},
    }


def _continuation(fragment: Fragment, index: int) -> dict[str, Any] | None:
    if not fragment.arguments and not fragment.extra and not fragment.function_extra:
        return None
    return {
        **fragment.extra,
        "index": index,
        "function": {**fragment.function_extra, "arguments": fragment.arguments},
    }


def _meaningful_choice(choice: dict[str, Any]) -> bool:
    """Whether a rewritten choice still tells the client anything."""
    if any(value not in (None, "") for value in (choice.get("delta") or {}).values()):
        return True
    return any(
        value not in (None, "", {}, [])
        for key, value in choice.items()
        if key not in ("index", "finish_reason", "delta")
    )


def _meaningful(chunk: dict[str, Any]) -> bool:
    return any(
        value not in (None, "", {}, [])
        for key, value in chunk.items()
        if key not in ("id", "object", "created", "model", "system_fingerprint", "choices")
    )
