"""The chat stitcher's fast path (a read of whole plain chunks goes out as it came) against its
event-by-event path: the same bytes out, the same round outcome, whatever the reads."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.chat.stream import ChatStream
from tests.conftest import SERVER_TOOLS
from tests.tearing import FRAMINGS, Reads, by_byte, by_frame, framed, torn
from tests.test_chat_fixtures import TEXT_FIXTURES, TOOL_FIXTURES
from tests.upstream import fixture, text_stream


def by_two_frames(body: bytes) -> list[bytes]:
    frames = by_frame(body)
    return [b"".join(frames[i : i + 2]) for i in range(0, len(frames), 2)]


def burst(body: bytes) -> list[bytes]:
    """The first read brings the role chunk and every content chunk; the second the end."""
    frames = by_frame(body)
    return [b"".join(frames[:-2]), b"".join(frames[-2:])]


def torn_bursts(body: bytes) -> list[bytes]:
    """Reads of about three frames each, cut mid-frame."""
    size = len(by_frame(body)[1]) * 3 + 7
    return [body[i : i + size] for i in range(0, len(body), size)]


def relay(rounds: list[bytes], reads: Reads | list[list[bytes]]) -> tuple[bytes, list[Any], int]:
    """Feed every round as `reads` cuts it (or as given); the client's bytes, each round's
    outcome (calls and the assistant message kept for the next request), and how many reads
    went out as they came."""
    stream = ChatStream(frozenset(SERVER_TOOLS), include_usage=True)
    out: list[bytes] = []
    outcomes: list[Any] = []
    untouched = 0
    for i, body in enumerate(rounds):
        if i:
            stream.start_round()
        for piece in reads(body) if callable(reads) else reads[i]:
            sent = stream.feed(piece)
            untouched += sent is piece
            out.append(sent)
        outcome = stream.end_round()
        out += outcome.tail
        calls = [(c.id, c.name, c.arguments) for c in outcome.server_calls]
        outcomes.append((calls, stream.message.message()))
    out += stream.finish()
    return b"".join(out), outcomes, untouched


def rounds_of(name: str) -> list[bytes]:
    """The fixture; after one with calls, a text round."""
    rounds = [fixture(name)]
    if name in TOOL_FIXTURES:
        rounds.append(text_stream("It is sunny in Paris today.", "chatcmpl-second"))
    return rounds


@pytest.mark.parametrize("name", TOOL_FIXTURES + TEXT_FIXTURES)
@pytest.mark.parametrize(
    "reads",
    [by_frame, by_two_frames, burst, torn_bursts],
    ids=["frames", "pairs", "burst", "torn-bursts"],
)
def test_fast_path_matches_event_by_event(name: str, reads: Reads) -> None:
    rounds = rounds_of(name)
    expected = relay(rounds, by_byte)
    got = relay(rounds, reads)
    assert got[:2] == expected[:2]
    assert expected[2] == 0  # torn reads never take the fast path


@settings(max_examples=25, deadline=None)
@pytest.mark.parametrize("inside_frame_ends", [False, True], ids=["anywhere", "frame-ends"])
@pytest.mark.parametrize("framing", FRAMINGS)
@given(name=st.sampled_from(TOOL_FIXTURES + TEXT_FIXTURES), data=st.data())
def test_every_round_torn_in_any_framing_gives_the_same_stream(
    framing: str, inside_frame_ends: bool, name: str, data: st.DataObject
) -> None:
    """Every round torn, at least once, in the same framing: the bytes whole LF frames give."""
    rounds = rounds_of(name)
    pieces = [data.draw(torn(framed(body, framing), inside_frame_ends)) for body in rounds]
    assert relay(rounds, pieces)[:2] == relay(rounds, by_frame)[:2]


def test_plain_reads_go_out_as_they_came() -> None:
    body = text_stream("one two three four five", "chatcmpl-a")
    out, _, untouched = relay([body], by_frame)
    assert untouched == 5  # the content chunks after the role chunk that taught the id
    assert out.startswith(by_frame(body)[0])


def test_later_rounds_are_renamed_to_the_first_rounds_id() -> None:
    first = fixture("chat/openai-gpt4o-tool-call.sse")
    second = text_stream("one two three four five", "chatcmpl-second")
    out, outcomes, _ = relay([first, second], by_frame)
    assert b"chatcmpl-second" not in out
    assert outcomes[1][1]["content"] == "one two three four five"


def test_content_before_a_server_call_is_kept_for_the_next_request() -> None:
    """Plain chunks that went out unread are read once the round turns out to need them."""
    words = text_stream("Let me check.", "chatcmpl-c").split(b"data: [DONE]")[0]
    frames = by_frame(words)[:-1]  # without the `stop` finish
    call = (
        b'data: {"id": "chatcmpl-c", "object": "chat.completion.chunk", "created": 1, '
        b'"model": "m", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, '
        b'"id": "call_1", "type": "function", "function": {"name": "weather", '
        b'"arguments": "{\\"city\\": \\"Paris\\"}"}}]}}]}\n\n'
        b'data: {"id": "chatcmpl-c", "object": "chat.completion.chunk", "created": 1, '
        b'"model": "m", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}'
        b"\n\ndata: [DONE]\n\n"
    )
    _, outcomes, untouched = relay([b"".join(frames) + call], by_frame)
    calls, message = outcomes[0]
    assert untouched == 3
    assert calls == [("call_1", "weather", '{"city": "Paris"}')]
    assert message["content"] == "Let me check."
