"""The Responses stitcher's fast path (a text delta that needs no change goes out unparsed)
against its event-by-event path: the same bytes out and the same round, whatever the reads."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.responses.stream import ResponsesStream
from tests.conftest import SERVER_TOOLS
from tests.test_chat_stream import Reads, by_byte, by_frame
from tests.upstream import FIXTURES, fixture

NAMES = sorted(f"responses/{p.name}" for p in (FIXTURES / "responses").glob("*.sse"))


def relay(body: bytes, reads: Reads, show_calls: bool) -> tuple[bytes, Any, int]:
    stream = ResponsesStream(frozenset(SERVER_TOOLS), show_calls)
    out: list[bytes] = []
    untouched = 0
    for piece in reads(body):
        sent = stream.feed(piece)
        untouched += sent is piece
        out.append(sent)
    outcome = stream.end_round()
    calls = [(c.id, c.name, c.arguments) for c in outcome.server_calls]
    return b"".join(out + outcome.tail), (calls, stream.round_items(), stream.sequence), untouched


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("show_calls", [False, True])
def test_fast_path_matches_event_by_event(name: str, show_calls: bool) -> None:
    body = fixture(name).replace(b"\r\n", b"\n")
    expected = relay(body, by_byte, show_calls)
    got = relay(body, by_frame, show_calls)
    assert got[:2] == expected[:2]
    assert expected[2] == 0


def test_text_deltas_go_out_as_they_came() -> None:
    body = fixture("responses/openai-web-search-hosted.sse").replace(b"\r\n", b"\n")
    deltas = body.count(b"event: response.output_text.delta\n")
    _, _, untouched = relay(body, by_frame, False)
    assert deltas > 10
    assert untouched == deltas


def test_a_renumbered_delta_is_rewritten() -> None:
    """Once a hidden call shifted the numbering, deltas are parsed and renumbered."""
    body = fixture("responses/azure-function-call.sse").replace(b"\r\n", b"\n")
    frames = by_frame(body)
    delta = (
        b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
        b'"sequence_number":%d,"item_id":"msg_1","output_index":1,"content_index":0,'
        b'"delta":"hi","logprobs":[]}\n\n'
    )
    stream = ResponsesStream(frozenset({"get_weather", *SERVER_TOOLS}), False)
    for frame in frames[:-1]:
        stream.feed(frame)
    sequence = stream.sequence
    sent = stream.feed(delta % (sequence + 5))
    assert b'"sequence_number":%d' % sequence in sent
