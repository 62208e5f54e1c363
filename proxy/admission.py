"""What a request must satisfy to be admitted: a bounded head and body, a path that stays
under `/v1`.

The limits answer `413` (body) and `431` (request line and headers) in the OpenAI format and
log one warning. The connection stays open: uvicorn discards the rest of the request rather
than the client losing the answer to a reset while it still sends (asyncio clients, such as
the `openai` one, do). `proxy.server` bounds a head while it arrives; the head check here is
exact, and the only one when uvicorn runs without the proxy's protocol.

Paths: httpx resolves dot segments before a request goes out, so `/v1/../secret` — or
`/v1/%2e%2e/secret`, or `/v1/models/..%2F..%2Fsecret` once an upstream decodes it — would
reach the upstream outside its configured base URL, with the proxy's upstream key. A path
with a dot segment, as sent or percent-decoded (`\\` and `;` ending a segment too, as some
servers read them), or percent-encoded twice over, is refused; every other path is relayed
exactly as it was sent.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.types import Message, Receive, Scope

from proxy.errors import APIError
from proxy.head import Head

log = logging.getLogger("proxy")

# `.` or `..` as a whole segment; `\` and `;` end one for some servers (IIS, Tomcat).
_DOT_SEGMENT = re.compile(rb"(?:^|[/\\])\.\.?(?:[/\\;]|$)")


def climbs(path: bytes) -> bool:
    """Whether `path` has a dot segment as sent or percent-decoded (decoding keeps every one
    there was) — or is percent-encoded twice over: nothing legitimate is, and an upstream
    that decodes twice could find one."""
    if b"%" in path:
        path = unquote_to_bytes(path)
        if unquote_to_bytes(path) != path:
            return True
    return b"." in path and _DOT_SEGMENT.search(path) is not None


def head_too_large(limit: int) -> APIError:
    return APIError.of(
        431,
        f"The request line and headers are larger than the proxy accepts ({limit} bytes; "
        "setting max_header_kb).",
        code="request_header_fields_too_large",
    )


def body_too_large(limit: int) -> APIError:
    return APIError.of(
        413,
        f"The request body is larger than the proxy accepts ({limit} bytes; setting max_body_mb).",
        code="request_too_large",
    )


def refused(error: APIError, client: Any) -> None:
    """The one log line of a request refused for its size (no header values in it)."""
    peer = f"{client[0]}:{client[1]}" if client else "an unknown client"
    log.warning("refused a request from %s: %d %s", peer, error.status, _REASONS[error.status])


_REASONS = {431: "request line and headers too large", 413: "request body too large"}


class Admission:
    """The bounds a request must keep to reach the routes and the key check (only its
    observation comes before): checked by `proxy.front`, as the request arrives."""

    def __init__(self, max_body: int, max_head: int) -> None:
        self.max_body = max_body
        self.max_head = max_head

    def admit(self, scope: Scope, head: Head, receive: Receive) -> tuple[APIError | None, Receive]:
        """The error that refuses the request, if any; and `receive`, counting the body as it
        arrives when no length was declared."""
        if climbs(scope["raw_path"]):
            return APIError.of(
                400,
                "The request path has a '.' or '..' segment (possibly percent-encoded) or is "
                "percent-encoded twice over: the proxy only serves paths under /v1, and relays "
                "them as sent.",
                code="invalid_path",
            ), receive
        error = None
        length = head.length
        if head.size > self.max_head:
            error = head_too_large(self.max_head)
        elif length is not None and int(length) > self.max_body:
            error = body_too_large(self.max_body)
        if error is not None:
            refused(error, scope.get("client"))
            return error, receive
        if length is None or head.chunked:  # no length declared: count the body as it arrives
            receive = self._counted(receive, scope)
        return None, receive

    def _counted(self, receive: Receive, scope: Scope) -> Receive:
        left = self.max_body

        async def counted() -> Message:
            nonlocal left
            message = await receive()
            if message["type"] == "http.request":
                left -= len(message.get("body", b""))
                if left < 0:
                    error = body_too_large(self.max_body)
                    refused(error, scope.get("client"))
                    raise error
            return message

        return counted
