"""Shutdown has a bound: `openai-tool-proxy serve`, run for real, stopped mid-request.

The upstream holds every stream open (until the test ends, or 5 s at most: `script.stalled`
counts a wait that gave up) — so whatever ended a request, it was the proxy's drain.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import openai
import pytest
from starlette.requests import Request
from starlette.responses import Response

from proxy.drain import Drain
from tests.chunks import calls_round, completion
from tests.distributions import write_distribution
from tests.events import message_events, stream_round
from tests.processes import clean_env, free_port, spawn, stop, wait_healthy
from tests.servers import serve, upstream_app
from tests.upstream import Reply, ScriptedUpstream, text_stream

CODE = "server_shutting_down"


def held(reply: Reply, after: bytes) -> Reply:
    """`reply`, its upstream pausing after the frame that holds `after`."""
    assert isinstance(reply.body, bytes)
    cut = reply.body.index(b"\n\n", reply.body.index(after)) + 2
    return Reply([reply.body[:cut], reply.body[cut:]], reply.status, reply.content_type)


CHAT = held(Reply(text_stream("one two three")), b'"one"')
RESPONSE = held(stream_round("resp_1", message_events(0, "one two")), b"output_text.delta")
_ANSWER = completion({"role": "assistant", "content": "late"}).body
assert isinstance(_ANSWER, bytes)
HELD_ANSWER = Reply([b"", _ANSWER], content_type="application/json")  # headers, then held

NAP = """
import time

from proxy import tool


@tool
def nap() -> str:
    \"\"\"Sleeps for a minute.\"\"\"
    time.sleep(60)
    return "rested"
"""


@contextmanager
def proxy(
    script: ScriptedUpstream, gate: threading.Event, tmp_path: Path, drain: float
) -> Iterator[tuple[subprocess.Popen[str], openai.OpenAI]]:
    """`serve` with one tool, `nap`, in front of `script`'s upstream."""
    write_distribution(tmp_path / "site", "drain_nap", NAP, {"nap": "drain_nap"})
    with serve(upstream_app(script, gate)) as upstream_url:
        port = free_port()
        env = clean_env(
            tmp_path / "site",
            TOOL_PROXY_UPSTREAM=upstream_url + "/v1",
            TOOL_PROXY_PORT=str(port),
            TOOL_PROXY_PLUGINS="nap",
            TOOL_PROXY_DRAIN_TIMEOUT=str(drain),
        )
        proc = spawn(["serve"], env, tmp_path)
        try:
            wait_healthy(proc, f"http://127.0.0.1:{port}/health/readiness")
            base = f"http://127.0.0.1:{port}/v1"
            yield proc, openai.OpenAI(api_key="sk", base_url=base, max_retries=0)
        finally:
            gate.set()
            if proc.poll() is None:
                stop(proc)


def chat_stream(client: openai.OpenAI) -> Iterator[str]:
    """A streamed chat completion, as its content arrives; it has begun when this returns."""
    stream = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "count"}], stream=True
    )
    words = (c.choices[0].delta.content or "" for c in stream if c.choices)
    assert "".join(next(words) for _ in range(2)) == "one"
    return words


def waiting(
    pool: ThreadPoolExecutor, client: openai.OpenAI, script: ScriptedUpstream
) -> Future[object]:
    """A non-streamed chat completion, sent once the upstream has every earlier request;
    it has reached the upstream (which holds its answer) when this returns."""
    sent = len(script.requests)
    future = pool.submit(
        client.chat.completions.create, model="m", messages=[{"role": "user", "content": "x"}]
    )
    while len(script.requests) == sent:
        threading.Event().wait(0.01)
    return future


def shutting_down(proc: subprocess.Popen[str], sig: signal.Signals) -> list[str]:
    """Send `sig`; return uvicorn's log up to the line saying it is shutting down."""
    proc.send_signal(sig)
    assert proc.stderr is not None
    lines = []
    while "Shutting down" not in (line := proc.stderr.readline()):
        assert line, "serve exited without shutting down"
        lines.append(line)
    return [*lines, line]


def test_sigterm_ends_every_request_still_running_when_the_drain_time_is_up(
    tmp_path: Path,
) -> None:
    """Streams end with the API's error event (whether the upstream or a tool keeps them
    waiting), a request not answered yet is a 503, a relayed body ends as HTTP allows — and
    the process exits, with the upstream still holding every one of them open."""
    gate = threading.Event()
    script = ScriptedUpstream(
        CHAT,
        RESPONSE,
        HELD_ANSWER,
        Reply([b"data: 1\n\n", b"data: 2\n\n"]),
        Reply([b"x" * 10, b"y" * 10], headers={"content-length": "20"}),
        calls_round(("call_1", "nap", "{}")),
    )
    with proxy(script, gate, tmp_path, drain=0.5) as (proc, client), httpx.Client() as http:
        words = chat_stream(client)
        events = iter(client.responses.create(model="m", input="count", stream=True))
        while next(events).type != "response.output_text.delta":
            pass
        with ThreadPoolExecutor(1) as pool:
            plain = waiting(pool, client, script)
            base = str(client.base_url)
            with (
                http.stream("POST", base + "completions", json={"stream": True}) as relayed,
                http.stream("GET", base + "files/f/content") as sized,
            ):
                relayed_parts, sized_parts = relayed.iter_raw(), sized.iter_raw()
                assert next(relayed_parts) == b"data: 1\n\n"
                assert next(sized_parts) == b"x" * 10
                napping = client.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": "nap"}], stream=True
                )
                assert next(iter(napping)).choices[0].delta.role == "assistant"

                proc.send_signal(signal.SIGTERM)

                with pytest.raises(openai.APIError) as chat_error:
                    list(words)
                with pytest.raises(openai.APIError) as tool_error:
                    list(napping)
                rest = list(events)
                with pytest.raises(openai.APIStatusError) as refused:
                    plain.result(timeout=10)
                with pytest.raises(httpx.RemoteProtocolError):
                    list(relayed_parts)  # cut, never a truncated body that looks whole
                with pytest.raises(httpx.RemoteProtocolError):
                    list(sized_parts)
        _, err = proc.communicate(timeout=10)
        assert script.stalled == 0  # still held open when the proxy ended it all
    assert proc.returncode == 0
    assert "Traceback" not in err
    assert "ending 6 request(s) still in flight" in err
    assert chat_error.value.body["code"] == CODE  # type: ignore[index]
    assert tool_error.value.body["code"] == CODE  # type: ignore[index]
    assert len(script.requests) == 6  # the tool's round never got its answer
    assert rest[-1].type == "response.failed"
    assert rest[-1].response.error.code == CODE  # type: ignore[union-attr]
    assert [e.type for e in rest].count("response.output_text.delta") == 0
    assert refused.value.status_code == 503
    assert refused.value.body["code"] == CODE  # type: ignore[index]
    assert refused.value.body["type"] == "server_error"  # type: ignore[index]


def test_a_stream_that_ends_within_the_drain_time_completes(tmp_path: Path) -> None:
    """Ctrl+C once: the stream goes on to its end, then the process exits quietly with 0."""
    gate = threading.Event()
    script = ScriptedUpstream(CHAT)
    with proxy(script, gate, tmp_path, drain=30) as (proc, client):
        words = chat_stream(client)
        log = shutting_down(proc, signal.SIGINT)
        assert proc.poll() is None
        gate.set()  # the upstream goes on
        assert "".join(words) == " two three"
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "Traceback" not in "".join(log) + err
    assert "in flight" not in err


def test_a_second_ctrl_c_ends_the_drain_at_once_without_tracebacks(tmp_path: Path) -> None:
    gate = threading.Event()
    script = ScriptedUpstream(CHAT, HELD_ANSWER)
    with proxy(script, gate, tmp_path, drain=30) as (proc, client):
        words = chat_stream(client)
        with ThreadPoolExecutor(1) as pool:
            plain = waiting(pool, client, script)
            log = shutting_down(proc, signal.SIGINT)
            proc.send_signal(signal.SIGINT)
            with pytest.raises(openai.APIError) as ended:
                list(words)
            with pytest.raises(openai.APIStatusError) as refused:
                plain.result(timeout=10)
        _, err = proc.communicate(timeout=10)
        assert script.stalled == 0
    assert ended.value.body["code"] == CODE  # type: ignore[index]
    assert (refused.value.status_code, refused.value.body["code"]) == (503, CODE)  # type: ignore[index]
    assert proc.returncode == 128 + signal.SIGINT
    assert "Traceback" not in "".join(log) + err, err


def test_a_client_that_stops_reading_cannot_hold_the_shutdown(tmp_path: Path) -> None:
    """Its stream cannot even take the end of the body: uvicorn's backstop, a little after
    the drain, cuts the connection — and the process exits, with no traceback."""
    gate = threading.Event()
    gate.set()  # the upstream sends all it has: more than the sockets between can hold
    script = ScriptedUpstream(Reply([b"data: " + b"x" * (1 << 20) + b"\n\n"] * 16))
    with (
        proxy(script, gate, tmp_path, drain=0.3) as (proc, client),
        socket.socket() as reader,
    ):
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        reader.connect((client.base_url.host, client.base_url.port))
        reader.sendall(b"POST /v1/completions HTTP/1.1\r\nhost: p\r\ncontent-length: 0\r\n\r\n")
        assert reader.recv(15) == b"HTTP/1.1 200 OK"  # and not a byte more is read
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "timeout graceful shutdown exceeded" in err
    assert "Traceback" not in err


async def never_answers(request: Request) -> Response:
    await asyncio.sleep(60)
    raise AssertionError("unreachable")


async def test_a_cancellation_not_from_the_drain_is_left_alone() -> None:
    task = asyncio.create_task(Drain(10).guard(never_answers)(None))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_the_drain_ends_each_request_once() -> None:
    """The drain's time runs out, then a second Ctrl+C comes: a request already ending
    (its error event waiting for a slow client) is not cut again."""
    drain = Drain(10)
    closing = asyncio.Event()

    async def endpoint(request: Request) -> Response:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            await closing.wait()
            return Response(b"ended well")
        raise AssertionError("unreachable")

    task = asyncio.create_task(drain.guard(endpoint)(None))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    drain.expire()
    await asyncio.sleep(0)
    drain.expire()
    closing.set()
    assert (await task).body == b"ended well"
