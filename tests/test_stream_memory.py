"""What an open stream keeps of its request (DESIGN §7: memory per stream): the parsed body
alone — neither the bytes the client sent nor those the proxy sent upstream, which a stream
open for minutes would otherwise hold as two more copies of the whole history."""

from __future__ import annotations

import threading
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest

from proxy.app import create_app
from proxy.config import Settings
from tests.conftest import SERVER_TOOLS
from tests.events import message_events, stream_round
from tests.servers import serve, upstream_app
from tests.upstream import Reply, ScriptedUpstream, text_stream

HISTORY = 2 << 20  # bytes of the one message: far above everything else a stream holds
# A request's path and fields, its upstream stream, and how that stream ends.
Stream = tuple[str, dict[str, object], bytes, bytes]


@contextmanager
def traced() -> Iterator[None]:
    tracemalloc.start(40)
    try:
        yield
    finally:
        tracemalloc.stop()


def held_by_the_proxy() -> int:
    """Bytes allocated under the proxy's code and still alive."""
    proxy = tracemalloc.Filter(True, "*/proxy/*", all_frames=True)
    return sum(t.size for t in tracemalloc.take_snapshot().filter_traces([proxy]).traces)


def chat() -> Stream:
    message = {"role": "user", "content": "x" * HISTORY}
    body = text_stream("still thinking")
    return "/v1/chat/completions", {"messages": [message]}, body, b"data: [DONE]"


def responses() -> Stream:
    body = stream_round("resp_1", message_events(0, "still thinking")).body
    assert isinstance(body, bytes)
    return "/v1/responses", {"input": "x" * HISTORY}, body, b"response.completed"


@pytest.mark.parametrize("api", [chat, responses])
def test_an_open_stream_keeps_only_the_parsed_request(api: Callable[[], Stream]) -> None:
    path, fields, body, end = api()
    first = body.index(b"\n\n") + 2
    script = ScriptedUpstream(Reply([body[:first], body[first:]]))
    gate = threading.Event()  # the upstream holds the rest of its stream until it is set
    request = {"model": "m", "stream": True, **fields}
    with (
        serve(upstream_app(script, gate)) as upstream,
        serve(create_app(Settings(upstream=upstream + "/v1"), SERVER_TOOLS)) as proxy,
        traced(),
        httpx.Client(base_url=proxy, timeout=10) as client,
        client.stream("POST", path, json=request) as response,
    ):
        parts = response.iter_raw()
        assert next(parts)  # the stream is open, and waits
        held = held_by_the_proxy()
        gate.set()
        assert end in b"".join(parts)
    assert HISTORY <= held < 1.5 * HISTORY  # the parsed message; no copy of it as bytes
