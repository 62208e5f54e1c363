"""Every other `/v1/...` path: relayed byte for byte, both directions streamed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
from starlette.requests import Request
from starlette.responses import Response

from proxy.relay import RelayResponse
from proxy.upstream import Upstream, raw_headers


async def relay(upstream: Upstream, request: Request, body: bytes | None = None) -> Response:
    """Send `request` on upstream as is (or with `body`, when already read) and stream back
    the upstream's status, headers and bytes unchanged."""
    headers = upstream.request_headers(request.headers.items())
    content: bytes | AsyncIterator[bytes] | None
    if body is not None:
        content = body
    elif "content-length" in request.headers or "transfer-encoding" in request.headers:
        content = request.stream()
        if "content-length" in request.headers:
            headers.append(("content-length", request.headers["content-length"]))
    else:
        content = None
    path = request.url.path.removeprefix("/v1")
    response = await upstream.send(
        request.method, path, headers, content, request.scope.get("query_string", b"")
    )
    return RelayResponse(response.status_code, raw_headers(response.headers), _stream(response))


async def _stream(response: httpx.Response) -> AsyncIterator[bytes]:
    try:
        async for chunk in response.stream:  # type: ignore[union-attr]
            yield chunk
    finally:
        await response.aclose()
