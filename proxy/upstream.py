"""The upstream API: one pooled httpx client, header rules, and transport errors as API errors."""

from __future__ import annotations

import urllib.request
from collections.abc import AsyncIterator, Iterable
from urllib.parse import urlsplit

import httpx

from proxy.errors import APIError
from proxy.http1 import Http1Transport

# Headers as the ASGI scope and the transport carry them: bytes, names lower-case.
Headers = list[tuple[bytes, bytes]]

# Hop-by-hop headers (RFC 9110 §7.6.1) never cross a proxy; Host and Content-Length are
# recomputed for the upstream request.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
# `Expect: 100-continue` is answered by the proxy's own server; the upstream gets the body whole.
_NOT_FORWARDED = HOP_BY_HOP | {b"host", b"content-length", b"expect"}
# The client's response is the proxy's: its server stamps its own `Date` (and names no
# `Server`), so the upstream's would make two.
_NOT_RETURNED = frozenset({b"date", b"server"})


def _crossing(headers: Iterable[tuple[bytes, bytes]], drop: frozenset[bytes]) -> Headers:
    """The headers (names lower-case) that may cross the proxy: those neither hop-by-hop,
    nor named in `Connection`, nor in `drop`."""
    pairs = list(headers)
    skip = HOP_BY_HOP | drop
    for name, value in pairs:
        if name == b"connection":
            skip = skip | {token.strip().lower() for token in value.split(b",")}
    return [(name, value) for name, value in pairs if name not in skip]


def raw_headers(headers: httpx.Headers, drop: frozenset[bytes] = frozenset()) -> Headers:
    """An upstream response's headers that reach the client, minus any in `drop`; the values
    byte for byte."""
    return _crossing(((name.lower(), value) for name, value in headers.raw), drop | _NOT_RETURNED)


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
        key = [(b"authorization", b"Bearer " + api_key.encode())] if api_key else []
        dropped = _NOT_FORWARDED | ({b"authorization"} if api_key else set())
        # By `rewritten`: what the client's headers lose, and what they gain.
        self._dropped = (dropped, dropped | {b"accept-encoding"})
        self._added: tuple[Headers, Headers] = (key, [*key, (b"accept-encoding", b"identity")])

    def request_headers(self, client_headers: Headers, rewritten: bool = False) -> Headers:
        """The client's headers (as the ASGI scope has them) as they go upstream. For a body
        the proxy reads (`rewritten`), the upstream is asked not to compress: the proxy must
        understand every byte."""
        headers = _crossing(client_headers, self._dropped[rewritten])
        headers += self._added[rewritten]
        return headers

    async def send(
        self,
        method: str,
        path: str,
        headers: Headers,
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

    async def aclose(self) -> None:
        await self.transport.aclose()


def _timed_out(exc: httpx.TransportError) -> bool:
    """A real timeout — not a refused connection that a transport labelled one."""
    if not isinstance(exc, httpx.TimeoutException):
        return False
    cause = exc.__cause__
    return isinstance(cause, TimeoutError) or not isinstance(cause, OSError)
