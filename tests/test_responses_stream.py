"""The Responses stitcher's fast path (a text delta that needs no change goes out unparsed)
against its event-by-event path: the same bytes out and the same rounds, whatever the reads —
in the first round and in later ones, whose numbering the rounds before may have shifted —
and a stream the client can read: checked by a reading that shares no code with the proxy."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.responses.calls import SERVER_LABEL, Showing
from proxy.responses.stream import ResponsesStream
from proxy.tools.runner import ToolResult
from tests.conftest import SERVER_TOOLS
from tests.events import call_events, frame, message_events, stream_round
from tests.reference_sse import read_events
from tests.tearing import FRAMINGS, Reads, by_byte, by_frame, framed, torn
from tests.upstream import FIXTURES, fixture

NAMES = sorted(f"responses/{p.name}" for p in (FIXTURES / "responses").glob("*.sse"))
TOOLS = frozenset({"get_weather", *SERVER_TOOLS})


def showing(show_calls: bool) -> Showing:
    return Showing(TOOLS, {name: (SERVER_LABEL, name) for name in TOOLS} if show_calls else {})


def relay(
    rounds: list[bytes], reads: Reads | list[list[bytes]], show_calls: bool
) -> tuple[bytes, Any, int]:
    """Feed each round as `reads` cuts it (or as given), between rounds as the engine does;
    the client's bytes, each round's calls and items, and how many reads went out as they
    came (the fast path: only a text delta is returned as the very bytes fed)."""
    stream = ResponsesStream(showing(show_calls))
    out: list[bytes] = []
    rounds_seen: list[Any] = []
    untouched = 0
    for i, body in enumerate(rounds):
        for piece in reads(body) if callable(reads) else reads[i]:
            sent = stream.feed(piece)
            untouched += sent is piece
            out.append(sent)
        outcome = stream.end_round()
        out += outcome.tail
        calls = [(c.id, c.name, c.arguments) for c in outcome.server_calls]
        rounds_seen.append((calls, stream.round_items()))
        if outcome.failed:  # the upstream's error event ended the client's stream
            return b"".join(out), rounds_seen, untouched
        if i + 1 < len(rounds):
            out += stream.show_results([ToolResult(c, "done", True) for c in outcome.server_calls])
            stream.start_round()
    return b"".join(out + stream.finish()), rounds_seen, untouched


def client_events(out: bytes) -> list[dict[str, Any]]:
    """The client's events, read as a client reads them; checked to be one well-numbered
    response: `sequence_number` 0, 1, 2 …, items added at 0, 1, 2 …, and every event about
    an item carrying the index its item was added at."""
    events, cut = read_events(out)
    assert not cut
    parsed = [json.loads(data) for _, data in events]
    assert [name.decode() for name, _ in events] == [e["type"] for e in parsed]
    assert [e["sequence_number"] for e in parsed] == list(range(len(parsed)))
    added = [e for e in parsed if e["type"] == "response.output_item.added"]
    assert [e["output_index"] for e in added] == list(range(len(added)))
    index_of = {e["item"]["id"]: e["output_index"] for e in added}
    for event in parsed:
        if "item_id" in event:
            assert event["output_index"] == index_of[event["item_id"]], event
    return parsed


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("show_calls", [False, True])
def test_fast_path_matches_event_by_event(name: str, show_calls: bool) -> None:
    body = fixture(name)
    expected = relay([body], by_byte, show_calls)
    got = relay([body], by_frame, show_calls)
    assert got[:2] == expected[:2]
    assert expected[2] == 0


def test_text_deltas_go_out_as_they_came() -> None:
    body = fixture("responses/openai-web-search-hosted.sse")
    deltas = body.count(b"event: response.output_text.delta\n")
    out, _, untouched = relay([body], by_frame, False)
    assert deltas > 10
    assert untouched == deltas
    client_events(out)


class Counted(ResponsesStream):
    """Counts the events read event by event (parsed), not on the fast path."""

    parsed = 0

    def _event(self, data: bytes) -> list[bytes]:
        self.parsed += 1
        return super()._event(data)


def whole(body: bytes) -> list[bytes]:
    """The round in one read, as a proxy that fell behind reads an upstream's burst."""
    return [body]


@pytest.mark.parametrize("name", NAMES)
def test_a_read_of_many_events_gives_the_same_stream(name: str) -> None:
    body = fixture(name)
    for show_calls in (False, True):
        assert relay([body], whole, show_calls)[:2] == relay([body], by_byte, show_calls)[:2]


@pytest.mark.parametrize("name", NAMES)
def test_two_reads_cut_at_any_event_give_the_same_stream(name: str) -> None:
    """The second read starting with text deltas that need no change and going on with some
    that do (their numbers shifted by hidden events), or with other events."""
    body = fixture(name)
    expected = relay([body], by_byte, False)[:2]
    for cut in (m.end() for m in re.finditer(rb"\n\n", body)):
        assert relay([body], [[body[:cut], body[cut:]]], False)[:2] == expected, cut


def test_text_deltas_in_a_burst_go_out_unparsed() -> None:
    """Every text delta of a round read at once is passed on unparsed, the events before,
    between and after them read one by one."""
    body = fixture("responses/openai-web-search-hosted.sse")
    stream = Counted(showing(False))
    out = stream.feed(body)
    deltas = body.count(b"event: response.output_text.delta\n")
    assert deltas > 10
    assert stream.parsed == body.count(b"\n\n") - deltas
    assert out == relay([body], by_byte, False)[0][: len(out)]


def test_a_delta_with_a_carriage_return_in_its_line_is_read_as_sse_reads_it() -> None:
    """A bare `\r` ends a line in SSE, wherever it is — even where JSON would take it as
    whitespace: such a delta is not one `data:` line, and is read event by event."""
    body = stream_round("resp_0", message_events(0, "Hello there", "msg_a")).pieces[0]
    at = body.index(b'"output_index"', body.index(b"event: response.output_text.delta"))
    body = body[:at] + b"\r" + body[at:]
    assert relay([body], whole, False)[0] == relay([body], by_byte, False)[0]


# -- later rounds: upstream numbering restarts, the client's goes on ------------------------

WEATHER = call_events(0, "call_1", "weather", '{"location": "Oslo"}')
CHECKING = message_events(0, "Checking.", "msg_a")
LATER_ROUNDS = {
    # A hidden call is all the first round showed: the second round's numbers are the
    # client's, and its text deltas go out as they came.
    "numbers-kept": ([[WEATHER], [message_events(0, "Sunny in Oslo today", "msg_b")]], False, 4),
    # The same, the call shown as an `mcp_call`: every later item moves one place on.
    "shown-call": ([[WEATHER], [message_events(0, "Sunny in Oslo today", "msg_b")]], True, 0),
    # A visible message, then a call: the next round's message comes one place on, its
    # events counted from another start.
    "both-shifted": (
        [
            [CHECKING, call_events(1, "call_1", "weather", "{}")],
            [message_events(0, "Sunny in Oslo", "msg_b")],
        ],
        False,
        1,
    ),
    # The second round's hidden call gives its message the client's place back; only the
    # sequence differs (by one), in this round and the next.
    "sequence-shifted": (
        [
            [CHECKING, call_events(1, "call_1", "weather", "{}")],
            [call_events(0, "call_2", "weather", "{}"), message_events(1, "Sunny now", "msg_b")],
            [message_events(0, "Bye then", "msg_c")],
        ],
        False,
        1,
    ),
}


def later_rounds(case: str) -> tuple[list[bytes], bool, int]:
    parts, show_calls, untouched = LATER_ROUNDS[case]
    rounds = [stream_round(f"resp_{i}", *items).pieces[0] for i, items in enumerate(parts)]
    return rounds, show_calls, untouched


@pytest.mark.parametrize("case", LATER_ROUNDS)
def test_later_rounds_take_the_fast_path_only_when_their_numbers_are_the_clients(
    case: str,
) -> None:
    """Deltas read one by one, as upstreams write them: the fast path runs (counted) when a
    delta's numbers need no change and never when they do — the client's stream is the one
    the event-by-event path makes, and well numbered."""
    rounds, show_calls, fast = later_rounds(case)
    expected = relay(rounds, by_byte, show_calls)
    got = relay(rounds, by_frame, show_calls)
    assert got[:2] == expected[:2]
    assert got[2] == fast
    client_events(got[0])
    assert relay(rounds, whole, show_calls)[:2] == expected[:2]  # each round in one read


@settings(max_examples=25, deadline=None)
@pytest.mark.parametrize("inside_frame_ends", [False, True], ids=["anywhere", "frame-ends"])
@pytest.mark.parametrize("framing", FRAMINGS)
@given(case=st.sampled_from(sorted(LATER_ROUNDS)), data=st.data())
def test_later_rounds_torn_in_any_framing_give_the_same_stream(
    framing: str, inside_frame_ends: bool, case: str, data: st.DataObject
) -> None:
    """Every round torn, at least once, in the same framing."""
    rounds, show_calls, _ = later_rounds(case)
    pieces = [data.draw(torn(framed(body, framing), inside_frame_ends)) for body in rounds]
    expected = relay(rounds, by_frame, show_calls)
    assert relay(rounds, pieces, show_calls)[:2] == expected[:2]


def test_spaced_json_is_read_event_by_event() -> None:
    """An upstream writing `{"type": "…"}` with spaces gets no fast path — and the same
    events out (those passed on as they came keep their spaces)."""
    rounds, show_calls, _ = later_rounds("numbers-kept")
    spaced = [
        b"".join(
            b"event: %s\ndata: %s\n\n" % (name, json.dumps(json.loads(data)).encode())
            for name, data in read_events(body)[0]
        )
        for body in rounds
    ]
    expected = relay(rounds, by_frame, show_calls)
    got = relay(spaced, by_frame, show_calls)
    assert client_events(got[0]) == client_events(expected[0])
    assert got[1] == expected[1]
    assert got[2] == 0


# -- one delta, its numbers chosen: forwarded only when they are the client's ---------------


def second_round_at_a_delta() -> tuple[ResponsesStream, int]:
    """A stream in its second round, after a visible message and a hidden call. This round:
    a message at upstream index 0 (the client's 1), a hidden call at 1, a message at 2 (the
    client's 2) about to get its text. Returns the stream and the client's next sequence
    number."""
    first = stream_round("resp_1", CHECKING, call_events(1, "call_1", "weather", "{}"))
    stream = ResponsesStream(showing(False))
    for piece in by_frame(first.pieces[0]):
        stream.feed(piece)
    assert stream.end_round().server_calls
    stream.start_round()
    second = stream_round(
        "resp_2",
        message_events(0, "x", "msg_0"),
        call_events(1, "call_2", "weather", "{}"),
        message_events(2, "y", "msg_2"),
    )
    frames = by_frame(second.pieces[0])
    last_delta = max(i for i, f in enumerate(frames) if b"text.delta" in f)
    for piece in frames[:last_delta]:
        stream.feed(piece)
    return stream, stream.sequence


def delta(output_index: int, sequence_number: int) -> bytes:
    return frame(
        {
            "type": "response.output_text.delta",
            "item_id": f"msg_{output_index}",
            "output_index": output_index,
            "content_index": 0,
            "delta": "hi",
            "logprobs": [],
            "sequence_number": sequence_number,
        }
    )


@pytest.mark.parametrize(
    ("output_index", "shift", "out"),
    [
        (2, 0, "as-is"),  # the client's numbers: forwarded unparsed
        (2, 5, "renumbered"),  # a sequence the client is not at
        (0, 0, "renumbered"),  # an index the client knows by another number
        (1, 0, "dropped"),  # the index of the round's hidden call
    ],
)
def test_a_delta_goes_out_unchanged_only_with_the_clients_numbers(
    output_index: int, shift: int, out: str
) -> None:
    stream, sequence = second_round_at_a_delta()
    data = delta(output_index, sequence + shift)
    sent = stream.feed(data)
    if out == "as-is":
        assert sent is data
    elif out == "dropped":
        assert sent == b""
    else:
        renumbered = json.loads(delta(output_index, sequence).split(b"data: ")[1])
        renumbered["output_index"] = stream.indices[output_index]
        assert sent == frame(renumbered)
    assert stream.sequence == sequence + (out != "dropped")
