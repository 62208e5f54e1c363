"""Server-sent events, sans-I/O: bytes in (torn at any offset), whole events out.

Tolerates what real upstreams send: `data:` with or without a space, `\\r\\n` or `\\r` line
ends, comments (`: keep-alive`), `event:`/`id:`/`retry:` lines and multi-line data.
"""

from __future__ import annotations

from typing import NamedTuple

import orjson


class Event(NamedTuple):
    """One dispatched event: its `event:` name (empty when none) and its joined `data:` lines."""

    name: bytes
    data: bytes


class SSEDecoder:
    """Feed it whatever the network delivered; get back the events it completed."""

    __slots__ = ("_buffer", "_pending_cr", "torn")

    def __init__(self) -> None:
        self._buffer = b""
        self._pending_cr = False
        self.torn = False  # the stream ended inside an event (set by `close`)

    def feed(self, chunk: bytes) -> list[Event]:
        if self._pending_cr:
            chunk = b"\r" + chunk
            self._pending_cr = False
        if b"\r" in chunk:
            if chunk.endswith(b"\r"):
                # Could be the first half of a torn "\r\n": decide when the next byte arrives.
                chunk = chunk[:-1]
                self._pending_cr = True
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        *frames, self._buffer = (self._buffer + chunk if self._buffer else chunk).split(b"\n\n")
        events = []
        for frame in frames:
            if frame.startswith(b"data: ") and b"\n" not in frame:
                events.append(Event(b"", frame[6:]))  # the common case: one `data: ` line
            elif (event := _parse_frame(frame)) is not None:
                events.append(event)
        return events

    @property
    def idle(self) -> bool:
        """Whether no part of an event is waiting for the rest."""
        return not self._buffer and not self._pending_cr

    def close(self) -> list[Event]:
        """End of stream. A last frame without its blank line still counts when it is whole:
        both APIs send JSON or `[DONE]` in every frame, so one that does not parse was cut
        off by the stream's end — it is dropped, never passed on, and `torn` says so."""
        events = self.feed(b"\n") if self._pending_cr else []  # a last `\r` ended its line
        tail, self._buffer = self._buffer, b""
        event = _parse_frame(tail)
        if event is not None and _whole(event.data):
            return [*events, event]
        self.torn = any(line and not line.startswith(b":") for line in tail.split(b"\n"))
        return events


def _parse_frame(frame: bytes) -> Event | None:
    name = b""
    data: list[bytes] = []
    for line in frame.split(b"\n"):
        if not line or line.startswith(b":"):
            continue
        field, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            data.append(value)
        elif field == b"event":
            name = value
    if not data:
        return None
    return Event(name, b"\n".join(data))


def _whole(data: bytes) -> bool:
    if data == b"[DONE]":
        return True
    try:
        orjson.loads(data)
    except orjson.JSONDecodeError:
        return False
    return True


def encode(data: bytes, name: bytes = b"") -> bytes:
    """One SSE frame carrying `data` (which must not contain newlines)."""
    if name:
        return b"event: " + name + b"\ndata: " + data + b"\n\n"
    return b"data: " + data + b"\n\n"
