"""The fault matrix, live: the proxy under uvicorn on loopback, a real upstream server on
loopback misbehaving in every way the issue lists, and the real `openai` client. Nothing is
lost (every failure reaches the client as the API's own error), nothing hangs, and nothing is
left behind (no task, no upstream connection)."""

from __future__ import annotations

import asyncio
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import openai
import pytest

from proxy import tool
from proxy.app import create_app
from proxy.config import Settings
from proxy.tools.registry import Registry
from tests.chunks import calls_round, chunk, text_round
from tests.servers import loops, serve, unaccepting_port, upstream_app
from tests.upstream import Reply, ScriptedUpstream, sse, text_stream

USER = [{"role": "user", "content": "go"}]


class Signals:
    """What the tools did, seen from the test's thread."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.cancelled = threading.Event()


signals = Signals()


@pytest.fixture(autouse=True)
def fresh_signals() -> None:
    global signals
    signals = Signals()


@tool
async def wait_forever() -> str:
    """Waits until cancelled."""
    signals.started.set()
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        signals.cancelled.set()
        raise
    return "never"


@tool
def explode(reason: str) -> str:
    """Raises."""
    raise RuntimeError(reason)


@tool(timeout=0.2)
async def dawdle() -> str:
    """Runs past its timeout."""
    await asyncio.sleep(30)
    return "late"


@tool
def opaque() -> object:
    """Returns something JSON cannot say."""
    return object()


@tool
def flood() -> str:
    """Returns megabytes."""
    return "x" * (5 * 1024 * 1024)


@tool
def weather(city: str) -> str:
    """Weather in a city."""
    return f"Sunny in {city}"


TOOLS = Registry.of(wait_forever, explode, dawdle, opaque, flood, weather, plugin="faults")


@contextmanager
def proxy(upstream: Any, **settings: Any) -> Iterator[tuple[str, Any]]:
    """The proxy (served) in front of the ASGI app `upstream` (served); its URL and app."""
    with serve(upstream) as upstream_url:
        app = create_app(Settings(upstream=upstream_url + "/v1", **settings), TOOLS)
        with serve(app) as url:
            yield url, app


def client(url: str, **options: Any) -> openai.OpenAI:
    return openai.OpenAI(api_key="sk-test", base_url=url + "/v1", max_retries=0, **options)


def on_loop(url: str, fn: Callable[[], Any]) -> Any:
    """Run `fn` on the served app's event loop and return what it returns."""

    async def call() -> Any:
        return fn()

    return asyncio.run_coroutine_threadsafe(call(), loops[url]).result(5)


def tasks(url: str) -> int:
    """The tasks alive on the proxy's loop (besides the one counting them)."""
    return int(on_loop(url, lambda: len(asyncio.all_tasks()) - 1))


def upstream_connections(upstream_port: int) -> int:
    """Established TCP connections to the upstream's port from this machine (the proxy's)."""
    count = 0
    with open("/proc/net/tcp") as table:
        lines = table.read().splitlines()[1:]
    for line in lines:
        fields = line.split()
        remote, state = fields[2], fields[3]
        if state == "01" and int(remote.split(":")[1], 16) == upstream_port:
            count += 1
    return count


def idle_pooled(url: str, app: Any) -> int:
    transport = app.state.upstream.transport
    return int(on_loop(url, lambda: sum(len(c) for c in transport.idle.values())))


def settle(check: Callable[[], bool], seconds: float = 5) -> bool:
    """Whether `check` comes true within `seconds` (a bound for what must happen, not a race)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.02)
    return check()


def nothing_left(url: str, app: Any, upstream_url: str, baseline: int) -> None:
    port = int(upstream_url.rsplit(":", 1)[1])
    assert settle(lambda: tasks(url) <= baseline), f"{tasks(url)} tasks, {baseline} before"
    assert settle(lambda: upstream_connections(port) == idle_pooled(url, app))


# --------------------------------------------------------------------------- the upstream fails


async def stalls(scope: Any, receive: Any, send: Any) -> None:
    """An upstream that takes the request and never answers."""
    if scope["type"] != "http":
        return
    while (await receive())["type"] != "http.disconnect":
        pass


def test_an_upstream_that_never_answers_is_a_504_after_the_read_timeout() -> None:
    with (
        proxy(stalls, read_timeout=0.3) as (url, _),
        pytest.raises(openai.APIStatusError) as caught,
    ):
        client(url, timeout=10).chat.completions.create(model="m", messages=USER, stream=True)
    assert caught.value.status_code == 504
    assert caught.value.body["code"] == "upstream_timeout"


def test_an_upstream_that_cannot_be_connected_to_in_time_fails_after_the_connect_timeout() -> None:
    with unaccepting_port() as port:
        app = create_app(
            Settings(upstream=f"http://127.0.0.1:{port}/v1", connect_timeout=0.3), TOOLS
        )
        with serve(app) as url:
            started = time.monotonic()
            with pytest.raises(openai.APIStatusError) as caught:
                client(url).chat.completions.create(model="m", messages=USER)
            waited = time.monotonic() - started
    assert caught.value.status_code == 504
    assert caught.value.body["code"] == "upstream_timeout"
    assert "127.0.0.1" in caught.value.message
    assert waited < 5  # the connect timeout, not the read timeout (600 s) or the OS's


@pytest.mark.parametrize("stream", [True, False])
def test_an_html_error_page_is_passed_through_with_its_status(stream: bool) -> None:
    page = b"<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>"
    script = ScriptedUpstream(Reply(page, status=503, content_type="text/html"))
    with proxy(upstream_app(script)) as (url, _):
        http = httpx.post(
            url + "/v1/chat/completions",
            json={"model": "m", "messages": USER, "stream": stream},
        )
    assert http.status_code == 503
    assert http.content == page
    assert http.headers["content-type"] == "text/html"


def stream_text(stream: Any) -> str:
    return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


def test_a_stream_that_ends_without_done_after_its_finish_is_whole() -> None:
    script = ScriptedUpstream(Reply(sse(chunk({"content": "all here"}, finish="stop"), done=False)))
    with proxy(upstream_app(script)) as (url, _):
        stream = client(url).chat.completions.create(model="m", messages=USER, stream=True)
        assert stream_text(stream) == "all here"


def read_until_error(stream: Any) -> tuple[list[Any], openai.APIError]:
    """What the client read of a stream, and the API error that ended it."""
    seen = []
    with pytest.raises(openai.APIError) as caught:
        for piece in stream:
            seen.append(piece)
    return seen, caught.value


def test_a_stream_that_ends_before_its_finish_ends_with_the_error_event() -> None:
    body = sse(chunk({"role": "assistant", "content": "half"}), done=False)
    script = ScriptedUpstream(Reply(body))
    with proxy(upstream_app(script)) as (url, _):
        stream = client(url).chat.completions.create(model="m", messages=USER, stream=True)
        seen, error = read_until_error(stream)
    assert "ended before the completion" in error.message
    assert [c.choices[0].delta.content for c in seen] == ["half"]


def test_an_error_frame_mid_stream_reaches_the_client_as_the_api_error() -> None:
    error = {"error": {"message": "The server is overloaded", "type": "server_error"}}
    body = sse(chunk({"role": "assistant", "content": "Hel"}), error, done=False)
    script = ScriptedUpstream(Reply(body))
    with proxy(upstream_app(script)) as (url, _):
        stream = client(url).chat.completions.create(model="m", messages=USER, stream=True)
        with pytest.raises(openai.APIError, match="The server is overloaded"):
            list(stream)


def test_a_second_round_that_fails_after_content_ends_with_the_error_event() -> None:
    first = calls_round(("c1", "weather", '{"city": "Lima"}'))
    first.body = sse(chunk({"role": "assistant", "content": "Checking. "}), done=False) + first.body
    page = b"<html>502 Bad Gateway</html>"
    script = ScriptedUpstream(first, Reply(page, status=502, content_type="text/html"))
    with proxy(upstream_app(script)) as (url, _):
        stream = client(url).chat.completions.create(model="m", messages=USER, stream=True)
        seen, error = read_until_error(stream)
    assert "".join(c.choices[0].delta.content or "" for c in seen if c.choices) == "Checking. "
    assert "502" in error.message and "Bad Gateway" in error.message


# --------------------------------------------------------------------------- the tools fail


@pytest.mark.parametrize(
    ("name", "arguments", "expected"),
    [
        ("explode", '{"reason": "disk on fire"}', "error: 'explode' failed: RuntimeError: disk"),
        ("dawdle", "{}", "error: 'dawdle' timed out after 0.2 seconds"),
        ("opaque", "{}", "error: "),
        ("flood", "{}", "truncated"),
    ],
)
def test_a_failing_tool_becomes_a_result_the_model_reads(
    name: str, arguments: str, expected: str
) -> None:
    script = ScriptedUpstream(calls_round(("c1", name, arguments)), text_round("Sorry."))
    with proxy(upstream_app(script)) as (url, _):
        stream = client(url).chat.completions.create(model="m", messages=USER, stream=True)
        assert stream_text(stream) == "Sorry."
    result = script.requests[1]["messages"][-1]
    assert result["tool_call_id"] == "c1"
    assert expected in result["content"]
    assert len(result["content"].encode()) < 200 * 1024  # never megabytes upstream
    assert "<object object" not in result["content"]


def test_a_model_repeating_the_same_call_is_made_to_answer() -> None:
    same = ("c1", "weather", '{"city": "Lima"}')
    script = ScriptedUpstream(calls_round(same), calls_round(same), text_round("Sunny."))
    with proxy(upstream_app(script), max_rounds=8) as (url, _):
        stream = client(url).chat.completions.create(model="m", messages=USER, stream=True)
        assert stream_text(stream) == "Sunny."
    assert len(script.requests) == 3
    assert script.requests[2]["tool_choice"] == "none"


# --------------------------------------------------------------------------- the client leaves


async def started_stream(scope: Any, receive: Any, send: Any) -> bool:
    """An upstream's side of an HTTP request: read it, start an event stream (False for the
    server's other ASGI events)."""
    if scope["type"] != "http":
        return False
    await receive()
    start = [(b"content-type", b"text/event-stream")]
    await send({"type": "http.response.start", "status": 200, "headers": start})
    return True


def slow_stream(words: int, interval: float, left: threading.Event) -> Any:
    """An upstream streaming `words` chunks `interval` seconds apart; `left` is set when the
    proxy hangs up on it."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if not await started_stream(scope, receive, send):
            return
        frames = text_stream(" ".join(["word"] * words)).split(b"\n\n")
        gone = asyncio.ensure_future(receive())
        try:
            for frame in frames:
                if frame:
                    body = frame + b"\n\n"
                    await send({"type": "http.response.body", "body": body, "more_body": True})
                done, _ = await asyncio.wait([gone], timeout=interval)
                if done:
                    left.set()
                    return
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            gone.cancel()

    return app


def test_a_client_leaving_mid_stream_leaves_nothing_behind() -> None:
    left = threading.Event()
    with serve(slow_stream(1000, 0.05, left)) as upstream_url:
        app = create_app(Settings(upstream=upstream_url + "/v1"), TOOLS)
        with serve(app) as url:
            baseline = tasks(url)
            request = {"model": "m", "messages": USER, "stream": True}
            with httpx.stream("POST", url + "/v1/chat/completions", json=request) as response:
                next(response.iter_raw())
            assert left.wait(5), "the upstream stream was left open"
            nothing_left(url, app, upstream_url, baseline)


def test_a_client_leaving_mid_tool_cancels_the_tool_and_the_round() -> None:
    first = calls_round(("c1", "wait_forever", "{}"))
    first.body = sse(chunk({"role": "assistant", "content": "Waiting. "}), done=False) + first.body
    script = ScriptedUpstream(first)  # a second round would fail the script: none may come
    with serve(upstream_app(script)) as upstream_url:
        app = create_app(Settings(upstream=upstream_url + "/v1"), TOOLS)
        with serve(app) as url:
            baseline = tasks(url)
            request = {"model": "m", "messages": USER, "stream": True}
            with httpx.stream("POST", url + "/v1/chat/completions", json=request) as response:
                next(response.iter_raw())
                assert signals.started.wait(5)
            assert signals.cancelled.wait(5), "the running tool was not cancelled"
            nothing_left(url, app, upstream_url, baseline)
    assert len(script.requests) == 1


def test_two_hundred_streams_with_random_disconnects_leave_the_proxy_serving() -> None:
    left = threading.Event()
    rng = random.Random(8)
    with serve(slow_stream(20, 0.01, left)) as upstream_url:
        app = create_app(Settings(upstream=upstream_url + "/v1"), TOOLS)
        with serve(app) as url:
            baseline = tasks(url)

            async def one(http: httpx.AsyncClient, leave_after: int | None) -> str | None:
                request = {"model": "m", "messages": USER, "stream": True}
                frames = 0
                async with http.stream("POST", "/v1/chat/completions", json=request) as response:
                    text = ""
                    async for data in response.aiter_text():
                        text += data
                        frames += data.count("\n\n")
                        if leave_after is not None and frames >= leave_after:
                            return None  # hang up mid-stream
                    return text

            async def crowd() -> list[str | None]:
                limits = httpx.Limits(max_connections=200)
                async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as http:
                    plan = [rng.choice([None, 1, 3, 10]) for _ in range(200)]
                    return await asyncio.gather(*(one(http, n) for n in plan))

            outcomes = asyncio.run(crowd())
            finished = [text for text in outcomes if text is not None]
            assert finished and all("data: [DONE]\n\n" in text for text in finished)
            nothing_left(url, app, upstream_url, baseline)
            again = client(url).chat.completions.create(model="m", messages=USER, stream=True)
            assert stream_text(again) == " ".join(["word"] * 20)


def flooding(left: threading.Event, blocked: threading.Event) -> Any:
    """An upstream streaming big content chunks as fast as it may, until the proxy hangs up;
    `blocked` is set once a write of its waits (the proxy stopped reading)."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if not await started_stream(scope, receive, send):
            return
        frame = text_stream("x" * 65536).split(b"\n\n")[1] + b"\n\n"
        gone = asyncio.ensure_future(receive())
        try:
            while not gone.done():
                sending = asyncio.ensure_future(
                    send({"type": "http.response.body", "body": frame, "more_body": True})
                )
                first = asyncio.FIRST_COMPLETED
                done, _ = await asyncio.wait([sending, gone], timeout=0.3, return_when=first)
                if not done:
                    blocked.set()
                    await asyncio.wait([sending, gone], return_when=asyncio.FIRST_COMPLETED)
                if gone.done():
                    sending.cancel()
        finally:
            left.set()

    return app


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/files/f/content"])
def test_a_slow_client_that_leaves_closes_the_upstream(path: str) -> None:
    """The client stops reading, so the proxy's writes to it wait; then it hangs up. The
    upstream must be closed at once — stitched stream or byte-for-byte relay alike."""
    left, blocked = threading.Event(), threading.Event()
    with serve(flooding(left, blocked)) as upstream_url:
        app = create_app(Settings(upstream=upstream_url + "/v1"), TOOLS)
        with serve(app) as url:
            port = int(url.rsplit(":", 1)[1])
            body = b'{"model": "m", "stream": true, "messages": [{"role": "user", "content": "x"}]}'
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.sendall(
                    b"POST %s HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\n\r\n%s" % (path.encode(), len(body), body)
                )
                assert blocked.wait(10), "the proxy never stopped reading the upstream"
            assert left.wait(5), "the upstream was left open after the client left"
