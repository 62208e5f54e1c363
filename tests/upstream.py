"""A scripted upstream for tests: replays recorded bodies (whole or torn) and records requests.

Served for real on loopback by `tests/servers.py`: in the test's event loop for the app in
process (`loopback`), or under uvicorn in a thread (`upstream_app`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> bytes:
    """A recorded upstream body, e.g. `fixture("chat/groq-tool-call.sse")`."""
    return (FIXTURES / name).read_bytes()


def tear(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    """Split `data` at the given offsets, as a network might deliver it."""
    points = sorted({c for c in cuts if 0 < c < len(data)})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@dataclass
class Reply:
    """One scripted upstream response."""

    body: bytes | list[bytes]  # a list: one network read each (`loopback`: an exception
    # among them resets the connection there)
    status: int = 200
    content_type: str = "text/event-stream"
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def pieces(self) -> list[bytes]:
        return self.body if isinstance(self.body, list) else [self.body]


def sse_frames(text: str) -> list[str]:
    """The frames of an SSE body the client got, without comments."""
    return [f for f in text.split("\n\n") if f and not f.startswith(":")]


def sse(*chunks: dict[str, Any], done: bool = True) -> bytes:
    """An SSE body made of chat chunks (and `[DONE]`)."""
    body = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks)
    return body + (b"data: [DONE]\n\n" if done else b"")


def text_stream(text: str, completion_id: str = "chatcmpl-final", words: int = 0) -> bytes:
    """A plain content stream saying `text`, one chunk per word."""
    base = {"id": completion_id, "object": "chat.completion.chunk", "created": 1, "model": "m"}
    parts = text.split(" ")
    chunks = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}]
    for i, part in enumerate(parts):
        piece = part if i == 0 else " " + part
        chunks.append({**base, "choices": [{"index": 0, "delta": {"content": piece}}]})
    chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    return sse(*chunks)


class ScriptedUpstream:
    """Answers each request with the next scripted reply; keeps every request body."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies)
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.paths: list[str] = []
        self.urls: list[str] = []
        self.raw_headers: list[list[tuple[bytes, bytes]]] = []
        self.stalled = 0  # replies whose gate was never opened (tests/servers.py)

    def answer(
        self, method: str, target: str, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> Reply:
        """Record a request as it arrived (its headers byte for byte; by lower-case name,
        repeats joined, in `headers`) and reply to it."""
        merged: dict[str, str] = {}
        for raw_name, raw_value in headers:
            name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
            merged[name] = f"{merged[name]}, {value}" if name in merged else value
        path, _, query = target.partition("?")
        self.paths.append(f"{method} {path}?{query}")
        self.urls.append(f"http://{merged.get('host', '')}{target}")
        self.raw_headers.append(headers)
        return self.next_reply(body, merged)

    def next_reply(self, body: bytes, headers: dict[str, str]) -> Reply:
        try:
            self.requests.append(json.loads(body) if body else {})
        except ValueError:
            self.requests.append({"raw": body})
        self.headers.append(headers)
        if not self.replies:
            raise AssertionError("the upstream got more requests than scripted")
        return self.replies.pop(0)
