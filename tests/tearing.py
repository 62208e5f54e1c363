"""How a network may deliver an upstream's SSE body: one read per event, one per byte, or torn
at any offset — in any of the three line-end spellings SSE allows."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from hypothesis import settings
from hypothesis import strategies as st

from tests.upstream import tear

Reads = Callable[[bytes], list[bytes]]

FRAMINGS = {"LF": b"\n", "CRLF": b"\r\n", "CR": b"\r"}
_BLANK_LINE = re.compile(rb"\r\n\r\n|\n\n|\r\r")


def framed(body: bytes, framing: str) -> bytes:
    """A recorded (LF) body with its line ends spelt `framing`'s way. JSON escapes the
    newlines of its strings, so every `\\n` of a recording is a line end."""
    assert b"\r" not in body
    return body.replace(b"\n", FRAMINGS[framing])


def frame_ends(body: bytes) -> list[int]:
    """The offsets that fall inside the blank line ending a frame: between `\\n\\n`, or
    anywhere inside `\\r\\n\\r\\n` (between a `\\r` and its `\\n` too)."""
    return [m.start() + i for m in _BLANK_LINE.finditer(body) for i in range(1, len(m[0]))]


def by_frame(body: bytes) -> list[bytes]:
    """One read per event, as an upstream writing each event at once is read (LF bodies)."""
    return [frame + b"\n\n" for frame in body.split(b"\n\n") if frame]


def by_byte(body: bytes) -> list[bytes]:
    return [body[i : i + 1] for i in range(len(body))]


def torn(body: bytes, inside_frame_ends: bool) -> st.SearchStrategy[list[bytes]]:
    """`body` cut at least once, anywhere; with `inside_frame_ends`, at least once inside the
    blank line that ends a frame too."""
    anywhere = st.lists(st.integers(1, len(body) - 1), min_size=1, max_size=30)
    if not inside_frame_ends:
        return anywhere.map(lambda cuts: tear(body, cuts))
    ends = st.lists(st.sampled_from(frame_ends(body)), min_size=1, max_size=5)
    return st.tuples(anywhere, ends).map(lambda cuts: tear(body, cuts[0] + cuts[1]))


# For tests that replay bodies torn in every framing, at least once, anywhere or inside a frame
# end (`@TORN @CUTS @FRAMED @given(..., data=st.data())`, then `torn_body(data, …)`).
TORN = settings(max_examples=5, deadline=None)
CUTS = pytest.mark.parametrize("inside_frame_ends", [False, True], ids=["anywhere", "frame-ends"])
FRAMED = pytest.mark.parametrize("framing", FRAMINGS)


def torn_body(
    data: st.DataObject, body: bytes, framing: str, inside_frame_ends: bool
) -> list[bytes]:
    return data.draw(torn(framed(body, framing), inside_frame_ends))
