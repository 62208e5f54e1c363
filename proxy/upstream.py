"""The upstream API: one pooled httpx client, header rules, and transport errors as API errors."""

from __future__ import annotations

import urllib.request
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import httpx

from proxy.errors import APIError
from proxy.http1 import Http1Transport

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
# `Expect: 100-continue` is answered by the proxy's own server; the upstream gets the body whole.
_NOT_FORWARDED = HOP_BY_HOP | {"host", "content-length", "expect"}
# The client's response is the proxy's: its server stamps its own `Date` (and names no
# `Server`), so the upstream's would make two.
_NOT_RETURNED = frozenset({"date", "server"})


def _skipped(connection: Iterable[str], drop: frozenset[str]) -> frozenset[str]:
    """Names that must not cross: hop-by-hop ones, any the `Connection` header names, `drop`."""
    named = {token.strip().lower() for value in connection for token in value.split(",")}
    return HOP_BY_HOP | drop | named


def _crossing(headers: Iterable[tuple[str, str]], drop: frozenset[str]) -> list[tuple[str, str]]:
    """The headers that may cross the proxy, minus any named in `Connection` and in `drop`."""
    pairs = list(headers)
    skip = _skipped((value for name, value in pairs if name.lower() == "connection"), drop)
    return [(name, value) for name, value in pairs if name.lower() not in skip]


def forwardable(
    headers: Iterable[tuple[str, str]], drop: frozenset[str] = frozenset()
) -> list[tuple[str, str]]:
    """An upstream response's headers that reach the client, minus any named in
    `Connection` and in `drop`."""
    return _crossing(headers, drop | _NOT_RETURNED)


def raw_headers(
    headers: httpx.Headers, drop: frozenset[str] = frozenset()
) -> list[tuple[bytes, bytes]]:
    """`forwardable`, kept byte for byte."""
    skip = _skipped(headers.get_list("connection"), drop | _NOT_RETURNED)
    return [
        (name.lower(), value)
        for name, value in headers.raw
        if name.decode("latin-1").lower() not in skip
    ]


def default_transport(base_url: str) -> httpx.AsyncBaseTransport:
    """The lean HTTP/1.1 transport (`proxy.http1`), chosen by measurement (README,
    Performance) — or httpx's own when the environment names an HTTP proxy for the upstream
    (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, honouring `NO_PROXY`)."""
    parts = urlsplit(base_url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if proxy and not urllib.request.proxy_bypass(parts.hostname or ""):
        return httpx.AsyncHTTPTransport(
            proxy=proxy, limits=httpx.Limits(max_connections=None, max_keepalive_connections=256)
        )
    return Http1Transport(httpx.create_ssl_context())


class Upstream:
    """Where requests go. `api_key`, when set, replaces the client's `Authorization`.

    Requests go straight to the transport: the proxy needs none of `httpx.AsyncClient`'s
    cookies, redirects, auth or default headers, and skipping them is a measurable share of
    the time to first token.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 600.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.transport = transport or default_transport(base_url)
        self.timeouts: dict[str, float | None] = {
            "connect": connect_timeout,
            "read": read_timeout,
            "write": read_timeout,
            "pool": read_timeout,
        }
        self._urls: dict[tuple[str, bytes], httpx.URL] = {}

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
        headers = _crossing(client_headers, frozenset(drop))
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
        url = self._urls.get((path, query))
        if url is None:
            url = httpx.URL(self.base_url + path + ("?" + query.decode("latin-1") if query else ""))
            if len(self._urls) < 256:  # parsing a URL costs more than the rest of the request
                self._urls[path, query] = url
        try:
            if isinstance(content, bytes) and isinstance(self.transport, Http1Transport):
                return await self.transport.send_bytes(method, url, headers, content, self.timeouts)
            request = httpx.Request(
                method,
                url,
                headers=headers,
                content=content,
                extensions={"timeout": self.timeouts},
            )
            return await self.transport.handle_async_request(request)
        except httpx.TransportError as exc:
            if _timed_out(exc):
                raise APIError.of(
                    504,
                    f"the upstream API at {self.base_url} timed out: {exc!r}",
                    "server_error",
                    code="upstream_timeout",
                ) from exc
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
        del content  # sent: not kept while the response streams (it may for long)
        try:
            yield response
        finally:
            await response.aclose()

    async def aclose(self) -> None:
        await self.transport.aclose()


def _timed_out(exc: httpx.TransportError) -> bool:
    """A real timeout — not a refused connection that a transport labelled one."""
    if not isinstance(exc, httpx.TimeoutException):
        return False
    cause = exc.__cause__
    return isinstance(cause, TimeoutError) or not isinstance(cause, OSError)
