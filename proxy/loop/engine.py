"""The round loop, shared by every dialect: stream upstream → stitch → run tools → next round.

All I/O of a request lives here; what the bytes mean is the `Conversation`'s business.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import orjson

from proxy.errors import APIError
from proxy.loop.round import Conversation
from proxy.tools.runner import ToolRunner
from proxy.upstream import Upstream, forwardable

# Headers of the upstream's response that do not describe the body the proxy sends.
_BODY_HEADERS = frozenset({"content-length", "content-encoding"})


@dataclass
class Exchange:
    """The start of the client's response: upstream headers, then the body as it comes."""

    headers: list[tuple[str, str]]
    body: AsyncIterator[bytes]
    first: bytes = b""
    _rest: AsyncIterator[bytes] = field(init=False)

    def __post_init__(self) -> None:
        self._rest = self.body
        self.body = self._chain()

    async def _chain(self) -> AsyncIterator[bytes]:
        yield self.first
        async for part in self._rest:
            yield part


class Engine:
    def __init__(self, upstream: Upstream, runner: ToolRunner, max_rounds: int) -> None:
        self.upstream = upstream
        self.runner = runner
        self.max_rounds = max_rounds

    async def start(self, conv: Conversation, client_headers: list[tuple[str, str]]) -> Exchange:
        """Run until the client has something to receive.

        Raises `APIError` with the upstream's own status and body when a round fails before
        the client received anything, so the client sees the error as the API sent it.
        """
        headers: list[tuple[str, str]] = []
        body = self._run(conv, self.upstream.request_headers(client_headers), headers)
        first = await anext(body)
        return Exchange(headers, body, first)

    async def _run(
        self,
        conv: Conversation,
        request_headers: list[tuple[str, str]],
        response_headers: list[tuple[str, str]],
    ) -> AsyncIterator[bytes]:
        sent = False
        seen_calls: set[tuple[tuple[str, str], ...]] = set()
        round_no = 0
        while True:
            round_no += 1
            try:
                async with self.upstream.open(
                    "POST", conv.path, request_headers, orjson.dumps(conv.request())
                ) as response:
                    if response.status_code >= 400:
                        error = APIError(
                            response.status_code,
                            await response.aread(),
                            dict(forwardable(response.headers.items(), _BODY_HEADERS)),
                        )
                        if not sent:
                            raise error
                        for frame in conv.fail(_message_of(error), "upstream_error"):
                            yield frame
                        return
                    if not response_headers:
                        response_headers.extend(
                            forwardable(response.headers.items(), _BODY_HEADERS)
                        )
                    async for data in response.aiter_bytes():
                        for frame in conv.feed(data):
                            sent = True
                            yield frame
            except APIError as exc:
                if not sent:
                    raise
                for frame in conv.fail(_message_of(exc), "upstream_unreachable"):
                    yield frame
                return
            except httpx.HTTPError as exc:
                message = f"the upstream connection failed mid-response: {exc!r}"
                if not sent:
                    raise APIError.of(502, message, "server_error", None, "upstream_error") from exc
                for frame in conv.fail(message, "upstream_error"):
                    yield frame
                return
            outcome = conv.end_round()
            for frame in outcome.tail:
                sent = True
                yield frame
            if outcome.failed:
                return  # the upstream's error event already reached the client
            if not outcome.server_calls or round_no >= self.max_rounds:
                break
            results = await self.runner.run_all(outcome.server_calls)
            signature = tuple((c.name, c.arguments) for c in outcome.server_calls)
            repeated = signature in seen_calls
            seen_calls.add(signature)
            last = repeated or round_no + 1 >= self.max_rounds
            for frame in conv.add_results(outcome, results, last=last):
                sent = True
                yield frame
            if outcome.client_calls:
                break  # a mixed round: the client answers its own calls next
        for frame in conv.finish():
            yield frame


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
