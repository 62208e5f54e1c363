import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.sse import Event, SSEDecoder, encode
from tests.upstream import FIXTURES, tear


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


@given(
    index=st.integers(0, len(ALL_FIXTURES) - 1),
    cuts=st.lists(st.integers(1, 100_000), max_size=40),
    crlf=st.booleans(),
)
def test_any_tearing_gives_the_same_events(index, cuts, crlf):
    data = ALL_FIXTURES[index].read_bytes()
    if crlf:
        data = data.replace(b"\n", b"\r\n")
    whole = decode_all([data])
    assert whole
    assert decode_all(tear(data, [c % len(data) for c in cuts])) == whole


@given(index=st.integers(0, len(ALL_FIXTURES) - 1), end=st.integers(1, 100_000))
def test_a_body_cut_anywhere_gives_only_whole_events(index, end):
    data = ALL_FIXTURES[index].read_bytes()
    cut = data[: end % len(data)]
    decoder = SSEDecoder()
    events = decoder.feed(cut) + decoder.close()
    frames = cut.count(b"\n\n")
    assert events == decode_all([data])[: len(events)]
    assert len(events) in (frames, frames + 1)
    assert decoder.torn == (len(events) == frames and bool(cut.rpartition(b"\n\n")[2]))
