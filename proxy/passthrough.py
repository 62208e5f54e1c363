"""Every other `/v1/...` path: relayed byte for byte, both directions streamed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from proxy.upstream import HOP_BY_HOP, Upstream


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
    return raw_response(response.status_code, response.headers, _stream(response))


def raw_response(
    status: int, headers: httpx.Headers, body: AsyncIterator[bytes]
) -> StreamingResponse:
    """A streamed response whose headers are the upstream's, byte for byte (minus hop-by-hop
    ones)."""
    response = StreamingResponse(body, status_code=status)
    named = {
        token.strip().lower()
        for value in headers.get_list("connection")
        for token in value.split(",")
    }
    response.raw_headers = [
        (name.lower(), value)
        for name, value in headers.raw
        if name.decode("latin-1").lower() not in HOP_BY_HOP | named
    ]
    return response


async def _stream(response: httpx.Response) -> AsyncIterator[bytes]:
    try:
        async for chunk in response.aiter_raw():
            yield chunk
    finally:
        await response.aclose()
