"""A reading of a whole SSE body written from the spec ("Interpreting an event stream", WHATWG
HTML) and nothing else — no proxy code: the reference `proxy.sse` is checked against.

One rule is the proxy's, not the spec's: a last frame without its blank line counts when its
data is whole (JSON, or `[DONE]`), as both APIs send nothing else; otherwise the body ended
inside it.
"""

from __future__ import annotations

import json
import re

_LINE_END = re.compile(rb"\r\n|\r|\n")


def read_events(body: bytes) -> tuple[list[tuple[bytes, bytes]], bool]:
    """The `(event name, data)` of every event of `body`, and whether it ended inside one."""
    *lines, last = _LINE_END.split(body)
    if last:
        lines.append(last)  # the body's end ends its last line
    events: list[tuple[bytes, bytes]] = []
    data: list[bytes] = []
    name, fields = b"", False
    for line in lines:
        if not line:  # a blank line dispatches the event
            if data:
                events.append((name, b"\n".join(data)))
            name, data, fields = b"", [], False
        elif not line.startswith(b":"):  # not a comment
            fields = True
            field, _, value = line.partition(b":")
            value = value.removeprefix(b" ")
            if field == b"data":
                data.append(value)
            elif field == b"event":
                name = value
    if data and _whole(b"\n".join(data)):
        return [*events, (name, b"\n".join(data))], False
    return events, fields


def _whole(data: bytes) -> bool:
    try:
        json.loads(data)
    except ValueError:
        return data == b"[DONE]"
    return True
