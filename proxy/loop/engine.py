"""The round loop, shared by every dialect: stream upstream → stitch → run tools → next round.

All I/O of a request lives here; what the bytes mean is the `Conversation`'s business.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from time import perf_counter

import httpx
import orjson

from proxy.errors import APIError
from proxy.loop.round import Conversation
from proxy.loop.stopwatch import Stopwatch
from proxy.observe import tracing
from proxy.observe.record import current
from proxy.relay import Last
from proxy.tools.runner import ToolRunner
from proxy.upstream import Headers, Upstream, raw_headers

log = logging.getLogger("proxy")

# Headers of the upstream's response that do not describe the body the proxy sends.
_BODY_HEADERS = frozenset({b"content-length", b"content-encoding"})


@dataclass
class Exchange:
    """The start of the client's response: upstream headers, the first bytes, the rest."""

    headers: list[tuple[bytes, bytes]]
    first: bytes
    rest: AsyncGenerator[bytes]
    watch: Stopwatch
    conv: Conversation

    def cut(self, message: str, code: str) -> Last:
        """The bytes that end a stream early, after any whole part of `rest`: the API's own
        error event (Chat `error`, Responses `response.failed`)."""
        return _last(self.conv, b"".join(self.conv.fail(message, code)), self.watch)


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
        client_headers: Headers,
        query: bytes = b"",
        watch: Stopwatch | None = None,
    ) -> Exchange:
        """Run until the client has something to receive.

        Raises `APIError` — the upstream's own status and body, or the proxy's 502 — when a
        round fails before the client received anything. `watch` (running) times the proxy's
        own work on the request.
        """
        watch = watch or Stopwatch()
        current().watch = watch
        headers: list[tuple[bytes, bytes]] = []
        request_headers = self.upstream.request_headers(client_headers, rewritten=True)
        rounds = self._rounds(conv, request_headers, query, headers, watch)
        body = _guarded(conv, rounds, watch)
        first = await anext(body)
        return Exchange(headers, first, body, watch, conv)

    async def _rounds(
        self,
        conv: Conversation,
        request_headers: Headers,
        query: bytes,
        response_headers: list[tuple[bytes, bytes]],
        watch: Stopwatch,
    ) -> AsyncGenerator[bytes]:
        seen_calls: set[tuple[tuple[str, str], ...]] = set()
        record = current()
        round_no = 0
        while True:
            round_no += 1
            record.rounds = round_no
            request = conv.request()
            body = orjson.dumps(request)
            with tracing.upstream_round(request) as span:
                watch.pause()
                sent = perf_counter()
                response = await self.upstream.send("POST", conv.path, request_headers, body, query)
                del body  # sent: a stream may stay open long, and need not keep it
                record.first_byte(perf_counter() - sent)
                try:
                    if response.status_code >= 400:
                        raise APIError(
                            response.status_code,
                            await response.aread(),
                            _text(raw_headers(response.headers, _BODY_HEADERS)),
                        )
                    if not response_headers:
                        response_headers.extend(raw_headers(response.headers, _BODY_HEADERS))
                    async for data in body_of(response):
                        watch.resume()
                        out = conv.feed(data)  # what one read brought goes out in one write
                        watch.pause()
                        if out:
                            yield out
                except httpx.HTTPError as exc:
                    raise _Failed(
                        f"the upstream connection failed mid-response: {exc!r}", "upstream_error"
                    ) from exc
                finally:
                    await response.aclose()
                watch.resume()
                outcome = conv.end_round()
                if outcome.failed or outcome.error is not None:
                    tracing.finish(span, {}, "upstream_error")
            tail = b"".join(outcome.tail)
            if outcome.failed:  # the upstream's error event, passed on: the stream ends
                watch.pause()
                yield _last(conv, tail, watch)
                return
            if tail:
                watch.pause()
                yield tail
                watch.resume()
            if outcome.error is not None:
                raise _Failed(outcome.error, "upstream_incomplete")
            if not outcome.server_calls or round_no >= self.max_rounds:
                break
            watch.pause()
            results = await self.runner.run_all(outcome.server_calls)
            watch.resume()
            signature = tuple((c.name, c.arguments) for c in outcome.server_calls)
            repeated = signature in seen_calls
            seen_calls.add(signature)
            last = repeated or round_no + 1 >= self.max_rounds
            shown = b"".join(conv.add_results(outcome, results, last=last))
            if shown:
                watch.pause()
                yield shown
                watch.resume()
            if outcome.client_calls:
                break  # a mixed round: the client answers its own calls next
        tail = b"".join(conv.finish())
        watch.pause()
        log.debug("%s: proxy overhead %s ms over %d round(s)", conv.path, watch.ms, round_no)
        yield _last(conv, tail, watch)


async def _guarded(
    conv: Conversation, rounds: AsyncGenerator[bytes], watch: Stopwatch
) -> AsyncGenerator[bytes]:
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
        yield _last(conv, b"".join(conv.fail(_message_of(exc), "upstream_error")), watch)
    except _Failed as exc:
        if not sent:
            raise APIError.of(exc.status, str(exc), "server_error", code=exc.code) from exc
        yield _last(conv, b"".join(conv.fail(str(exc), exc.code)), watch)
    except Exception as exc:
        log.exception("request failed")
        message = f"the proxy failed: {type(exc).__name__}: {exc}"
        if not sent:
            raise APIError.of(500, message, "server_error", code="proxy_error") from exc
        yield _last(conv, b"".join(conv.fail(message, "proxy_error")), watch)
    finally:
        await rounds.aclose()  # closed with this body: the upstream response with it


def _last(conv: Conversation, data: bytes, watch: Stopwatch) -> Last:
    """The response's last bytes; a stream's end with the proxy's time on it as a comment."""
    return Last(data + watch.comment()) if conv.streaming else Last(data)


def body_of(response: httpx.Response) -> AsyncIterator[bytes]:
    """The response body as it arrives. Uncompressed (as the proxy asks), the transport's own
    stream is read directly: no decoder or re-chunking layer on the hot path."""
    if response.headers.get("content-encoding", "identity") == "identity":
        return aiter(response.stream)  # type: ignore[arg-type]
    return response.aiter_bytes()


def _text(headers: Headers) -> dict[str, str]:
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in headers}


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
