"""The upstream API: one pooled httpx client, header rules, and transport errors as API errors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

import httpx

from proxy.errors import APIError

# Hop-by-hop headers (RFC 9110 §7.6.1) never cross a proxy; Host and Content-Length are
# recomputed for the upstream request.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_NOT_FORWARDED = HOP_BY_HOP | {"host", "content-length"}


def forwardable(
    headers: Iterable[tuple[str, str]], drop: frozenset[str] = frozenset()
) -> list[tuple[str, str]]:
    """The headers that may cross the proxy, minus any named in `Connection` and in `drop`."""
    pairs = list(headers)
    named = {
        token.strip().lower()
        for name, value in pairs
        if name.lower() == "connection"
        for token in value.split(",")
    }
    skip = HOP_BY_HOP | named | drop
    return [(name, value) for name, value in pairs if name.lower() not in skip]


class Upstream:
    """Where requests go. `api_key`, when set, replaces the client's `Authorization`."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 600.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.client = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(timeout, connect=10.0),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=256),
            follow_redirects=False,
        )

    def request_headers(
        self, client_headers: Iterable[tuple[str, str]], rewritten: bool = False
    ) -> list[tuple[str, str]]:
        """The client's headers as they go upstream. For a body the proxy reads (`rewritten`),
        the upstream is asked not to compress: the proxy must understand every byte."""
        drop = set(_NOT_FORWARDED)
        if self.api_key:
            drop.add("authorization")
        if rewritten:
            drop.add("accept-encoding")
        headers = forwardable(client_headers, frozenset(drop))
        if self.api_key:
            headers.append(("authorization", f"Bearer {self.api_key}"))
        if rewritten:
            headers.append(("accept-encoding", "identity"))
        return headers

    async def send(
        self,
        method: str,
        path: str,
        headers: list[tuple[str, str]],
        content: bytes | AsyncIterator[bytes] | None = None,
        query: bytes = b"",
    ) -> httpx.Response:
        """Send a request; the response comes back with its body still unread (close it)."""
        url = self.base_url + path
        if query:
            url += "?" + query.decode("latin-1")
        request = self.client.build_request(method, url, headers=headers, content=content)
        try:
            return await self.client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise APIError.of(
                504,
                f"the upstream API at {self.base_url} timed out: {exc!r}",
                "server_error",
                code="upstream_timeout",
            ) from exc
        except httpx.TransportError as exc:
            raise APIError.of(
                502,
                f"the upstream API at {self.base_url} is unreachable: {exc!r}",
                "server_error",
                code="upstream_unreachable",
            ) from exc

    @asynccontextmanager
    async def open(
        self,
        method: str,
        path: str,
        headers: list[tuple[str, str]],
        content: bytes,
        query: bytes = b"",
    ) -> AsyncIterator[httpx.Response]:
        """`send`, closing the response when the block ends."""
        response = await self.send(method, path, headers, content, query)
        try:
            yield response
        finally:
            await response.aclose()

    async def aclose(self) -> None:
        await self.client.aclose()
