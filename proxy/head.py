"""What the proxy reads of a request's head, in one pass over its headers, for the front
door's checks (`proxy.front`): each reads its fields here rather than walking the headers
again."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.types import Scope

from proxy.observe.request_id import HEADER as REQUEST_ID
from proxy.upstream import Headers

TOOLS = b"x-tool-proxy-tools"  # "none", or tool names separated by commas (`proxy.policy`)


@dataclass(slots=True)
class Head:
    forwarded: Headers = field(default_factory=list)  # all but the proxy's own two
    size: int = 0  # the request line and headers as sent, give or take optional whitespace
    length: bytes | None = None  # Content-Length
    chunked: bool = False  # a Transfer-Encoding was given
    authorization: bytes | None = None  # the first
    request_id: bytes | None = None  # the first
    tools: list[bytes] = field(default_factory=list)  # every X-Tool-Proxy-Tools value


def read_head(scope: Scope) -> Head:
    # The request line: the method, " ", the target, " HTTP/1.1" and CRLF; and the final CRLF.
    head = Head(
        size=len(scope["method"]) + len(scope["raw_path"]) + len(scope["query_string"]) + 14
    )
    forwarded = head.forwarded
    for pair in scope["headers"]:
        name, value = pair
        head.size += len(name) + len(value) + 4
        if name == REQUEST_ID:  # the observer puts the one it accepts back
            head.request_id = head.request_id or value
            continue
        if name == TOOLS:
            head.tools.append(value)
            continue
        forwarded.append(pair)
        if name == b"content-length":
            head.length = value
        elif name == b"transfer-encoding":
            head.chunked = True
        elif name == b"authorization" and head.authorization is None:
            head.authorization = value
    return head
