"""An upstream body that ends inside a frame (DESIGN §4): the torn frame never reaches the
client, which gets the API's own error event instead — shown with the real `openai` client,
for cuts at every offset inside a frame, streamed and not, on both APIs."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from proxy.app import create_app
from proxy.config import Settings
from tests.chunks import chunk, completion, usage
from tests.conftest import SERVER_TOOLS
from tests.events import body_round, message_events, stream_round
from tests.servers import serve
from tests.upstream import Reply, sse

CHAT_CUT = "the upstream stream ended before the completion did"
RESPONSES_CUT = "the upstream stream ended before the response completed"
USER = [{"role": "user", "content": "hi"}]


def cuts_inside(body: bytes, frame: int, most: int = 200) -> tuple[bytes, list[int]]:
    """The bytes before frame number `frame`, and lengths of that frame's prefixes that are
    not whole (short of the end of its last `data:` line): all of them, or `most` spread
    over the frame, the first and the last always among them."""
    frames = [f + b"\n\n" for f in body.split(b"\n\n") if f]
    before = b"".join(frames[:frame])
    torn = len(frames[frame]) - 3
    return before, sorted({*range(1, torn, -(-torn // most)), torn})


async def chat_outcome(client: openai.AsyncOpenAI) -> tuple[str, list[str], str | None]:
    """The content, the finish reasons and the error message the client ends with."""
    content, finishes, error = "", [], None
    try:
        stream = await client.chat.completions.create(
            model="m", messages=USER, stream=True, stream_options={"include_usage": True}
        )
        async for c in stream:
            if c.choices:
                content += c.choices[0].delta.content or ""
                finishes += [c.choices[0].finish_reason] if c.choices[0].finish_reason else []
    except openai.APIError as exc:  # a JSON decode error of a torn frame would fail the test
        error = exc.message
    return content, finishes, error


CHAT_BODY = sse(
    chunk({"role": "assistant", "content": "Hel"}),
    chunk({"content": "lo"}),
    chunk(finish="stop"),
    {**chunk(), "choices": [], "usage": usage(3, 2)},
)


@pytest.mark.parametrize(
    ("frame", "content"),
    [(1, "Hel"), (2, "Hello"), (3, "Hello"), (4, "Hello")],
    ids=["content", "finish", "usage", "done"],
)
async def test_chat_stream_cut_inside_a_frame(upstream, client, frame, content):
    """Cut inside content, the finish, the usage chunk after it, or `[DONE]`: the client
    reads what came whole, then the proxy's error — never the torn frame, never a finish
    that did not come, never a `[DONE]`."""
    before, cuts = cuts_inside(CHAT_BODY, frame)
    upstream(*(Reply([before, CHAT_BODY[len(before) : len(before) + cut]]) for cut in cuts))
    for _ in cuts:
        assert await chat_outcome(client) == (content, [], CHAT_CUT)


async def test_chat_whole_last_frames_without_their_blank_line_still_count(upstream, client):
    """A frame complete but for its blank line (`\\n` or nothing) is not torn."""
    whole = CHAT_BODY.removesuffix(b"data: [DONE]\n\n")
    upstream(Reply(CHAT_BODY[:-1]), Reply(CHAT_BODY[:-2]), Reply(whole[:-1]), Reply(whole[:-2]))
    for _ in range(4):
        assert await chat_outcome(client) == ("Hello", ["stop"], None)


RESPONSES_BODY = stream_round("resp_1", message_events(0, "Hello there friend")).pieces[0]
RESPONSES_KINDS = [
    json.loads(f.split(b"data: ")[1])["type"] for f in RESPONSES_BODY.split(b"\n\n")[:-1]
]


@pytest.mark.parametrize("frame", [0, 4, 10], ids=["created", "delta", "completed"])
async def test_responses_stream_cut_inside_a_frame(upstream, client, frame):
    """Cut inside `response.created`, a text delta or the terminal event: the client reads
    the whole events, then `response.failed` with the proxy's reason — or, cut before
    anything, a 502."""
    before, cuts = cuts_inside(RESPONSES_BODY, frame, most=60)
    expected = RESPONSES_KINDS[:frame]
    upstream(*(Reply([before, RESPONSES_BODY[len(before) : len(before) + cut]]) for cut in cuts))
    for _ in cuts:
        if not before:
            with pytest.raises(openai.APIStatusError) as raised:
                await client.responses.create(model="m", input="hi", stream=True)
            assert (raised.value.status_code, raised.value.code) == (502, "upstream_incomplete")
            assert raised.value.message.endswith(RESPONSES_CUT)
            continue
        stream = await client.responses.create(model="m", input="hi", stream=True)
        events = [event async for event in stream]  # a torn frame would raise here
        assert [e.type for e in events] == [*expected, "response.failed"]
        assert events[-1].response.error.message == RESPONSES_CUT
        assert [e.sequence_number for e in events] == list(range(len(events)))


async def test_non_streaming_bodies_cut_short_are_a_502(upstream, client):
    """Cut anywhere, a non-streamed body is never taken for a completion or a response."""
    chat = completion({"role": "assistant", "content": "Hello"}).pieces[0]
    responses = body_round("resp_1", {"type": "message", "id": "m", "content": []}).pieces[0]
    upstream(
        *(Reply(chat[:cut], content_type="application/json") for cut in range(len(chat))),
        *(Reply(responses[:cut], content_type="application/json") for cut in range(len(responses))),
    )
    for _ in range(len(chat)):
        with pytest.raises(openai.APIStatusError) as raised:
            await client.chat.completions.create(model="m", messages=USER)
        assert raised.value.status_code == 502
        assert raised.value.code == "bad_upstream_response"
    for _ in range(len(responses)):
        with pytest.raises(openai.APIStatusError) as raised:
            await client.responses.create(model="m", input="hi")
        assert raised.value.status_code == 502
        assert raised.value.code == "bad_upstream_response"


# -------------------------------------------------- live: uvicorn, the production transport


def cutting_upstream(bodies: list[bytes], drop: bool) -> Any:
    """An upstream on loopback sending each request the next of `bodies`, then ending the
    body there — or, with `drop`, dying with the connection still mid-body."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": bodies.pop(0), "more_body": drop})
        if drop:
            raise ConnectionAbortedError("the upstream dies mid-frame")

    return app


@pytest.mark.parametrize("drop", [False, True], ids=["body-ends", "connection-drops"])
def test_live_cuts_inside_a_frame(drop: bool) -> None:
    """Against a real upstream server, through the proxy under uvicorn: the client reads the
    whole frames and then the API's error event, on both APIs."""
    chat_before, chat_cuts = cuts_inside(CHAT_BODY, 1, most=4)
    responses_before, responses_cuts = cuts_inside(RESPONSES_BODY, 4, most=4)
    bodies = [chat_before + CHAT_BODY[len(chat_before) :][:cut] for cut in chat_cuts]
    bodies += [
        responses_before + RESPONSES_BODY[len(responses_before) :][:cut] for cut in responses_cuts
    ]
    cut = "the upstream connection failed mid-response" if drop else "the upstream stream ended"
    with serve(cutting_upstream(bodies, drop)) as upstream_url:
        app = create_app(Settings(upstream=upstream_url + "/v1"), SERVER_TOOLS)
        with (
            serve(app) as url,
            openai.OpenAI(api_key="sk-test", base_url=url + "/v1", max_retries=0) as client,
        ):
            for _ in chat_cuts:
                content = ""
                with pytest.raises(openai.APIError) as raised:
                    for c in client.chat.completions.create(model="m", messages=USER, stream=True):
                        content += c.choices[0].delta.content or ""
                assert raised.value.message.startswith(cut)
                assert content == "Hel"
            for _ in responses_cuts:
                events = list(client.responses.create(model="m", input="hi", stream=True))
                assert [e.type for e in events] == [*RESPONSES_KINDS[:4], "response.failed"]
                assert events[-1].response.error.message.startswith(cut)
