"""Keep-alives: a stitched stream that has nothing to send — a tool runs, the model thinks —
gets SSE comments, so idle timeouts along the way do not drop it; the real `openai` client
reads past them. A busy stream, or a relayed body that is not made of frames, gets none."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import AsyncIterator, Iterator

import httpx
import openai
from starlette.types import Message

from proxy import tool
from proxy.app import create_app
from proxy.config import Settings
from proxy.relay import Last, RelayResponse
from proxy.tools.registry import Registry
from tests.chunks import calls_round, text_round
from tests.conftest import SERVER_TOOLS
from tests.events import message_events, stream_round
from tests.servers import serve, upstream_app
from tests.upstream import Reply, ScriptedUpstream, text_stream

COMMENT = b": keep-alive\n\n"


class Tee(httpx.HTTPTransport):
    """The client's transport, also keeping every byte it received; `kept_alive` is set once
    two keep-alive comments came."""

    def __init__(self) -> None:
        super().__init__()
        self.received = b""
        self.kept_alive = threading.Event()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        response.stream = _Kept(response.stream, self)  # type: ignore[arg-type]
        return response


class _Kept(httpx.SyncByteStream):
    def __init__(self, stream: httpx.SyncByteStream, tee: Tee) -> None:
        self.stream = stream
        self.tee = tee

    def __iter__(self) -> Iterator[bytes]:
        for piece in self.stream:
            self.tee.received += piece
            if self.tee.received.count(COMMENT) >= 2:
                self.tee.kept_alive.set()
            yield piece

    def close(self) -> None:
        self.stream.close()


def proxy_of(
    script: ScriptedUpstream,
    registry: Registry = SERVER_TOOLS,
    gate: threading.Event | None = None,
    pace: float = 0,
    **settings: object,
) -> Iterator[str]:
    with serve(upstream_app(script, gate, pace)) as upstream_url:
        app = create_app(Settings(upstream=upstream_url + "/v1", **settings), registry)  # type: ignore[arg-type]
        with serve(app) as proxy_url:
            yield proxy_url


def client_of(url: str, tee: Tee) -> openai.OpenAI:
    return openai.OpenAI(
        api_key="sk", base_url=url + "/v1", max_retries=0, http_client=httpx.Client(transport=tee)
    )


def test_a_stream_waiting_on_a_tool_is_kept_alive_and_the_client_reads_past_it() -> None:
    tee = Tee()

    @tool
    def slow() -> str:
        """Takes its time: until the client has seen the stream kept alive (5 s at most)."""
        return "finished" if tee.kept_alive.wait(5) else "no keep-alive came"

    script = ScriptedUpstream(calls_round(("c1", "slow", "{}")), text_round("Done waiting"))
    for url in proxy_of(script, Registry.of(slow, plugin="tests"), keepalive_interval=0.05):
        stream = client_of(url, tee).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "wait"}], stream=True
        )
        chunks = list(stream)
    assert script.requests[1]["messages"][-1]["content"] == "finished"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Done waiting"
    assert chunks[-1].choices[0].finish_reason == "stop"
    before_round_2 = tee.received.split(b"Done waiting")[0]
    assert before_round_2.count(COMMENT) >= 2  # sent while the tool ran


def test_a_stream_waiting_on_a_slow_upstream_is_kept_alive() -> None:
    """A reasoning model thinking mid-stream: the upstream holds its stream open."""
    tee = Tee()
    body = stream_round("resp_1", message_events(0, "thinking done")).body
    assert isinstance(body, bytes)
    cut = body.index(b"response.output_item.added")
    cut = body.index(b"\n\n", cut) + 2
    script = ScriptedUpstream(Reply([body[:cut], body[cut:]]))
    for url in proxy_of(script, gate=tee.kept_alive, keepalive_interval=0.05):
        with client_of(url, tee).responses.stream(model="m", input="think") as stream:
            events = [event.type for event in stream]
            final = stream.get_final_response()
    assert script.stalled == 0  # the upstream went on because the client saw keep-alives
    assert final.output_text == "thinking done"
    assert events[-1] == "response.completed"
    head, tail = tee.received.split(b"response.output_item.added", 1)
    assert COMMENT not in head and tail.count(COMMENT) >= 2


def test_a_busy_stream_gets_no_keep_alive() -> None:
    """Parts 10 ms apart for half a second; the stream is looked at every 0.2 s."""
    tee = Tee()
    body = text_stream(" ".join(["word"] * 50))
    parts = [frame + b"\n\n" for frame in body.split(b"\n\n") if frame]
    script = ScriptedUpstream(Reply(parts))
    for url in proxy_of(script, pace=0.01, keepalive_interval=0.4):
        stream = client_of(url, tee).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "talk"}], stream=True
        )
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text.count("word") == 50
    assert COMMENT not in tee.received


def test_no_keep_alive_when_the_interval_is_zero_or_the_body_is_relayed_as_is() -> None:
    """A tool that takes 0.3 s with keep-alives off; a passthrough stream paused 0.3 s with
    them on (its parts are the upstream's reads, not frames: a comment could split one)."""

    @tool
    def pause() -> str:
        """Takes 0.3 s."""
        threading.Event().wait(0.3)
        return "ok"

    script = ScriptedUpstream(calls_round(("c1", "pause", "{}")), text_round("Fine"))
    tee = Tee()
    for url in proxy_of(script, Registry.of(pause, plugin="tests"), keepalive_interval=0):
        stream = client_of(url, tee).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}], stream=True
        )
        assert "".join(c.choices[0].delta.content or "" for c in stream) == "Fine"
    assert COMMENT not in tee.received

    body = b"data: one\n\n" + b"data: two\n\n"
    script = ScriptedUpstream(Reply([body[:7], body[7:]]))
    tee = Tee()
    for url in proxy_of(script, pace=0.3, keepalive_interval=0.05):
        with httpx.Client(transport=tee) as http:
            relayed = http.post(url + "/v1/completions", json={"model": "m", "stream": True})
    assert relayed.content == body
    assert COMMENT not in tee.received


async def test_no_keep_alive_once_the_last_part_is_going_out() -> None:
    """The last part waits for a slow client (the server's flow control) while the stream is
    looked at twenty times: nothing may follow it."""
    sent: list[Message] = []
    client_reads = asyncio.Event()

    async def send(message: Message) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and not message["more_body"]:
            await client_reads.wait()

    async def receive() -> Message:
        return await asyncio.Future()  # the client stays

    async def body() -> AsyncIterator[bytes]:
        yield Last(b"data: last\n\n")

    response = RelayResponse(200, [], body(), b"data: first\n\n", keepalive=0.01)
    relayed = asyncio.create_task(response({"type": "http"}, receive, send))
    await asyncio.sleep(0.1)
    client_reads.set()
    await relayed
    assert [m.get("body") for m in sent] == [None, b"data: first\n\n", b"data: last\n\n"]


async def test_an_idle_stream_gets_a_comment_each_interval_and_never_waits_longer() -> None:
    """Told by the event loop's clock, as the relay sends: the first comment comes at most an
    interval after the last part, the next ones an interval apart."""
    interval = 0.05
    loop = asyncio.get_running_loop()
    sent: list[tuple[float, bytes]] = []
    resume = asyncio.Event()

    async def send(message: Message) -> None:
        sent.append((loop.time(), message.get("body", b"")))
        if [body for _, body in sent].count(COMMENT) == 4:
            resume.set()

    async def receive() -> Message:
        return await asyncio.Future()

    async def body() -> AsyncIterator[bytes]:
        await asyncio.wait_for(resume.wait(), 5)  # a tool runs
        yield Last(b"data: after\n\n")

    response = RelayResponse(200, [], body(), b"data: before\n\n", keepalive=interval)
    await response({"type": "http"}, receive, send)
    times = [at for at, body in sent if body == COMMENT]
    assert [body for _, body in sent][1:] == [
        b"data: before\n\n",
        *[COMMENT] * 4,
        b"data: after\n\n",
    ]
    assert times[0] - sent[1][0] <= interval * 1.5
    assert all(b - a >= interval * 0.9 for a, b in itertools.pairwise(times))
