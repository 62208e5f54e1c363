from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.sse import Event, SSEDecoder, encode
from tests.reference_sse import read_events
from tests.tearing import FRAMINGS, framed, torn
from tests.upstream import FIXTURES


def decode_all(pieces: list[bytes]) -> list[Event]:
    decoder = SSEDecoder()
    events = [e for piece in pieces for e in decoder.feed(piece)]
    return events + decoder.close()


def test_framing_variants():
    body = (
        b": keep-alive\r\n\r\n"
        b"data: one\r\n\r\n"
        b"data:two\n\n"
        b'event: response.created\ndata: {"a": 1}\n\n'
        b"id: 7\nretry: 10\ndata: x\ndata: y\n\n"
        b'data: {"tail": "without its blank line"}'
    )
    assert decode_all([body]) == [
        Event(b"", b"one"),
        Event(b"", b"two"),
        Event(b"response.created", b'{"a": 1}'),
        Event(b"", b"x\ny"),
        Event(b"", b'{"tail": "without its blank line"}'),
    ]


def test_lone_carriage_returns_end_lines():
    assert decode_all([b"data: a\r\rdata: b\r\r"]) == [Event(b"", b"a"), Event(b"", b"b")]


def test_crlf_torn_between_reads():
    assert decode_all([b"data: a\r", b"\n\r", b"\ndata: b\r\n\r\n"]) == [
        Event(b"", b"a"),
        Event(b"", b"b"),
    ]


def test_encode_round_trips():
    assert decode_all([encode(b"{}"), encode(b"x", b"done")]) == [
        Event(b"", b"{}"),
        Event(b"done", b"x"),
    ]


@pytest.mark.parametrize(
    "tail",
    [b"data: [DONE]", b"data: [DONE]\n", b'data: {"a": 1}', b'data: {"a": 1}\r\n', b"data:{}\r"],
)
def test_a_whole_last_frame_without_its_blank_line_counts(tail):
    decoder = SSEDecoder()
    assert decoder.feed(b"data: {}\n\nevent: x\n" + tail) == [Event(b"", b"{}")]
    assert [e.name for e in decoder.close()] == [b"x"]
    assert not decoder.torn


def test_a_frame_the_stream_cut_off_is_dropped():
    frame = b'event: response.output_text.delta\ndata: {"type": "x", "delta": "hi"}\n\n'
    for cut in range(1, len(frame) - 2):  # short of the end of its `data:` line
        decoder = SSEDecoder()
        assert decoder.feed(b"data: [DONE]\n\n" + frame[:cut]) == [Event(b"", b"[DONE]")]
        assert decoder.close() == []
        assert decoder.torn


def test_a_comment_is_no_torn_frame():
    decoder = SSEDecoder()
    assert decoder.feed(b"data: {}\n\n: keep-al") == [Event(b"", b"{}")]
    assert decoder.close() == []
    assert not decoder.torn


ALL_FIXTURES = sorted(FIXTURES.glob("*/*.sse"))
BODIES = st.sampled_from(ALL_FIXTURES).map(Path.read_bytes)


@settings(max_examples=60)
@pytest.mark.parametrize("inside_frame_ends", [False, True], ids=["anywhere", "frame-ends"])
@pytest.mark.parametrize("framing", FRAMINGS)
@given(body=BODIES, data=st.data())
def test_any_tearing_gives_the_events_of_the_whole_body(framing, inside_frame_ends, body, data):
    """A recording in each framing, torn at least once (inside frame ends too): the events
    the reference reading of the whole body finds."""
    body = framed(body, framing)
    events, torn_off = read_events(body)
    assert events and not torn_off
    decoder = SSEDecoder()
    pieces = data.draw(torn(body, inside_frame_ends))
    assert [e for piece in pieces for e in decoder.feed(piece)] + decoder.close() == events
    assert not decoder.torn


LINES = st.sampled_from(
    [
        b": keep-alive",
        b":",
        b"event: response.created",
        b"event:x",
        b"id: 7",
        b"retry: 10",
        b"data",
        b"data:",
        b"data: {}",
        b'data:{"a": 1}',
        b"data:  two spaces",
        b"data: [DONE]",
        b"data: [1,",
        b"other: field",
    ]
)
LINE_ENDS = st.sampled_from(list(FRAMINGS.values()))


@settings(max_examples=300)
@given(
    frames=st.lists(st.lists(st.tuples(LINES, LINE_ENDS), max_size=4), max_size=6),
    blank_line_ends=st.lists(LINE_ENDS, min_size=6, max_size=6),
    last=st.lists(st.tuples(LINES, LINE_ENDS), max_size=2),
    data=st.data(),
)
def test_any_stream_torn_anywhere_reads_as_the_reference_reads_it(
    frames, blank_line_ends, last, data
):
    """Streams the recordings do not show: comments, `event:`, `id:` and `retry:` lines,
    multi-line data, `data` with no colon or two spaces, line ends mixed within a stream, a
    last frame with or without its blank line, whole or not."""
    body = b"".join(
        b"".join(line + end for line, end in frame) + blank
        for frame, blank in zip(frames, blank_line_ends, strict=False)
    ) + b"".join(line + end for line, end in last)
    if len(body) > 1 and data.draw(st.booleans()):
        body = body[: data.draw(st.integers(1, len(body) - 1))]  # and cut short anywhere
    events, torn_off = read_events(body)
    decoder = SSEDecoder()
    pieces = data.draw(torn(body, False)) if len(body) > 1 else [body]
    assert [e for piece in pieces for e in decoder.feed(piece)] + decoder.close() == events
    assert decoder.torn == torn_off


@settings(max_examples=60)
@pytest.mark.parametrize("framing", FRAMINGS)
@given(body=BODIES, data=st.data())
def test_a_body_cut_anywhere_gives_only_whole_events(framing, body, data):
    """A recording ending anywhere (between a `\\r` and its `\\n` too): the whole events
    before the cut, and `torn` when it fell inside one — as the reference reads it."""
    body = framed(body, framing)
    cut = body[: data.draw(st.integers(1, len(body) - 1))]
    events, torn_off = read_events(cut)
    decoder = SSEDecoder()
    assert decoder.feed(cut) + decoder.close() == events
    assert decoder.torn == torn_off
    assert events == read_events(body)[0][: len(events)]
