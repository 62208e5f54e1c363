"""The round loop, shared by every dialect: stream upstream → stitch → run tools → next round.

All I/O of a request lives here; what the bytes mean is the `Conversation`'s business.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from time import perf_counter

import httpx
import orjson

from proxy.errors import APIError
from proxy.loop.round import Conversation
from proxy.loop.stopwatch import Stopwatch
from proxy.tools.runner import ToolRunner
from proxy.upstream import Upstream, forwardable, raw_headers

log = logging.getLogger("proxy")

_HOLD = 50e-6  # seconds a frame may wait to share a write with the frames after it

# Headers of the upstream's response that do not describe the body the proxy sends.
_BODY_HEADERS = frozenset({"content-length", "content-encoding"})


@dataclass
class Exchange:
    """The start of the client's response: upstream headers, the first bytes, the rest."""

    headers: list[tuple[bytes, bytes]]
    first: bytes
    rest: AsyncIterator[bytes]
    watch: Stopwatch


class _Failed(Exception):
    """A round went wrong; `code` names how, for the client's error event."""

    def __init__(self, message: str, code: str, status: int = 502) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class Engine:
    def __init__(self, upstream: Upstream, runner: ToolRunner, max_rounds: int) -> None:
        self.upstream = upstream
        self.runner = runner
        self.max_rounds = max_rounds

    async def start(
        self,
        conv: Conversation,
        client_headers: list[tuple[str, str]],
        query: bytes = b"",
        watch: Stopwatch | None = None,
    ) -> Exchange:
        """Run until the client has something to receive.

        Raises `APIError` — the upstream's own status and body, or the proxy's 502 — when a
        round fails before the client received anything. `watch` (running) times the proxy's
        own work on the request.
        """
        watch = watch or Stopwatch()
        headers: list[tuple[bytes, bytes]] = []
        request_headers = self.upstream.request_headers(client_headers, rewritten=True)
        body = _guarded(conv, self._rounds(conv, request_headers, query, headers, watch))
        first = await anext(body)
        return Exchange(headers, first, body, watch)

    async def _rounds(
        self,
        conv: Conversation,
        request_headers: list[tuple[str, str]],
        query: bytes,
        response_headers: list[tuple[bytes, bytes]],
        watch: Stopwatch,
    ) -> AsyncIterator[bytes]:
        seen_calls: set[tuple[tuple[str, str], ...]] = set()
        round_no = 0
        started = False
        while True:
            round_no += 1
            body = orjson.dumps(conv.request())
            watch.pause()
            try:
                async with self.upstream.open(
                    "POST", conv.path, request_headers, body, query
                ) as response:
                    if response.status_code >= 400:
                        raise APIError(
                            response.status_code,
                            await response.aread(),
                            dict(forwardable(response.headers.items(), _BODY_HEADERS)),
                        )
                    if not response_headers:
                        response_headers.extend(raw_headers(response.headers, _BODY_HEADERS))
                    async for data in body_of(response):
                        watch.resume()
                        # What one read brought goes out in as few writes as possible, but
                        # no frame waits more than _HOLD for the ones after it.
                        batch: list[bytes] = []
                        since = perf_counter()
                        for frame in conv.feed(data):
                            batch.append(frame)
                            if not started or perf_counter() - since > _HOLD:
                                started = True
                                watch.pause()
                                yield b"".join(batch)
                                watch.resume()
                                batch.clear()
                                since = perf_counter()
                        watch.pause()
                        if batch:
                            yield b"".join(batch)
            except httpx.HTTPError as exc:
                raise _Failed(
                    f"the upstream connection failed mid-response: {exc!r}", "upstream_error"
                ) from exc
            watch.resume()
            outcome = conv.end_round()
            for frame in outcome.tail:
                yield frame
            if outcome.error is not None:
                raise _Failed(outcome.error, "upstream_incomplete")
            if outcome.failed:
                return  # the upstream's error event already reached the client
            if not outcome.server_calls or round_no >= self.max_rounds:
                break
            watch.pause()
            results = await self.runner.run_all(outcome.server_calls)
            watch.resume()
            signature = tuple((c.name, c.arguments) for c in outcome.server_calls)
            repeated = signature in seen_calls
            seen_calls.add(signature)
            last = repeated or round_no + 1 >= self.max_rounds
            for frame in conv.add_results(outcome, results, last=last):
                yield frame
            if outcome.client_calls:
                break  # a mixed round: the client answers its own calls next
        tail = b"".join(conv.finish())
        watch.pause()
        log.debug("%s: proxy overhead %s ms over %d round(s)", conv.path, watch.ms, round_no)
        yield tail


async def _guarded(conv: Conversation, rounds: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The rounds' bytes; a failure before any of them reached the client is raised as the
    API error it answers with, and after that it ends the stream with the dialect's own
    error event."""
    sent = False
    try:
        async for frame in rounds:
            sent = True
            yield frame
    except APIError as exc:
        if not sent:
            raise
        for frame in conv.fail(_message_of(exc), "upstream_error"):
            yield frame
    except _Failed as exc:
        if not sent:
            raise APIError.of(exc.status, str(exc), "server_error", code=exc.code) from exc
        for frame in conv.fail(str(exc), exc.code):
            yield frame
    except Exception as exc:
        log.exception("request failed")
        message = f"the proxy failed: {type(exc).__name__}: {exc}"
        if not sent:
            raise APIError.of(500, message, "server_error", code="proxy_error") from exc
        for frame in conv.fail(message, "proxy_error"):
            yield frame


def body_of(response: httpx.Response) -> AsyncIterator[bytes]:
    """The response body as it arrives. Uncompressed (as the proxy asks), the transport's own
    stream is read directly: no decoder or re-chunking layer on the hot path."""
    if response.headers.get("content-encoding", "identity") == "identity":
        return aiter(response.stream)  # type: ignore[arg-type]
    return response.aiter_bytes()


def _message_of(error: APIError) -> str:
    try:
        parsed = orjson.loads(error.body)
        message = parsed["error"]["message"]
        if isinstance(message, str):
            return message
    except (orjson.JSONDecodeError, KeyError, TypeError):
        pass
    text = error.body[:500].decode("utf-8", "replace")
    return f"the upstream API answered {error.status}: {text}"
