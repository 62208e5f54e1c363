"""Every other `/v1/...` path: relayed byte for byte, both directions streamed.

The path goes upstream exactly as the client sent it (and as `proxy.admission` checked it),
not as uvicorn decoded it: `/v1/models/org%2Fname` stays one segment.
"""

from __future__ import annotations

import string
from collections.abc import AsyncGenerator, AsyncIterator
from urllib.parse import quote_from_bytes

import httpx
from starlette.requests import Request
from starlette.responses import Response

from proxy.relay import RelayResponse
from proxy.upstream import Upstream, raw_headers

# Bytes a raw path may carry into the upstream URL as they are; the others are %-escaped.
_AS_SENT = string.ascii_letters + string.digits + string.punctuation


async def relay(upstream: Upstream, request: Request, body: bytes | None = None) -> Response:
    """Send `request` on upstream as is (or with `body`, when already read) and stream back
    the upstream's status, headers and bytes unchanged."""
    headers = upstream.request_headers(request.scope["headers"])
    content: bytes | AsyncIterator[bytes] | None
    if body is not None:
        content = body
    elif "content-length" in request.headers or "transfer-encoding" in request.headers:
        content = request.stream()
        if "content-length" in request.headers:
            headers.append((b"content-length", request.headers["content-length"].encode()))
    else:
        content = None
    path = quote_from_bytes(request.scope["raw_path"], _AS_SENT).removeprefix("/v1")
    response = await upstream.send(
        request.method, path, headers, content, request.scope.get("query_string", b"")
    )
    return RelayResponse(response.status_code, raw_headers(response.headers), _stream(response))


async def _stream(response: httpx.Response) -> AsyncGenerator[bytes]:
    try:
        async for chunk in response.stream:  # type: ignore[union-attr]
            yield chunk
    finally:
        await response.aclose()
