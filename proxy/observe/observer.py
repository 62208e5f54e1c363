"""What observes every request, for `proxy.front`: its id (accepted or made, sent upstream
with the request and back with the response), and, once the response is over, its span's
attributes, its metrics and its log line.

Per relayed chunk it adds one plain function call (`send` passed through), no more.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from contextvars import Token
from typing import TYPE_CHECKING

from starlette.routing import BaseRoute, Match
from starlette.types import Message, Scope, Send

from proxy.head import Head
from proxy.observe import logs, tracing
from proxy.observe.metrics import Metrics
from proxy.observe.record import Record, served, serving
from proxy.observe.request_id import HEADER, accepted

if TYPE_CHECKING:
    from opentelemetry.trace import Span


class Observer:
    """`routes` are the app's: a request refused before routing (a wrong key, a body too
    large) is still labelled with the route it asked for."""

    def __init__(self, metrics: Metrics, routes: Sequence[BaseRoute]) -> None:
        self.metrics = metrics
        self.routes = routes

    def begin(self, scope: Scope, head: Head) -> tuple[Record, Token[Record | None]]:
        """The request's record, made current until `end`. Its id — the client's, if sane —
        is the one the upstream and the tools get (the scope's headers become
        `head.forwarded`)."""
        record = Record(accepted(head.request_id), scope, metrics=self.metrics)
        own = (HEADER, record.id.encode())
        head.forwarded.append(own)
        scope["headers"] = head.forwarded
        return record, serving(record)

    @staticmethod
    def sender(record: Record, send: Send) -> Send:
        """`send`, noting the status and giving the response the request's id — unless the
        upstream answered with its own, which is kept (and logged)."""
        own_id = (HEADER, record.id.encode())

        def sending(message: Message) -> Awaitable[None]:
            if message["type"] == "http.response.start":
                record.status = message["status"]
                answer = message.setdefault("headers", [])
                theirs = next((value for name, value in answer if name == HEADER), None)
                if theirs is None:
                    answer.append(own_id)
                elif theirs != own_id[1]:
                    record.upstream_id = theirs.decode("latin-1")
            return send(message)

        return sending

    def finish(self, record: Record, scope: Scope, span: Span | None) -> None:
        """The response is over (or failed): the span's attributes and name."""
        if "route" not in scope:  # refused before routing
            scope["route"] = self._route_of(scope)
        if span is not None:
            tracing.finish(span, _span_attributes(record), _error_type(record.status))
            span.update_name(f"{scope['method']} {record.route}")

    @staticmethod
    def end(record: Record, token: Token[Record | None]) -> None:
        """The request is over: its metrics and its log line."""
        served(token)
        record.ended()
        logs.request_line(record)

    def _route_of(self, scope: Scope) -> BaseRoute | None:
        """The route the router would have chosen: the first full match, else the first
        partial one (a path matched, the method not)."""
        partial = None
        for route in self.routes:
            match = route.matches(scope)[0]
            if match is Match.FULL:
                return route
            if match is Match.PARTIAL and partial is None:
                partial = route
        return partial


def _span_attributes(record: Record) -> dict[str, str | int]:
    attributes: dict[str, str | int] = {
        "http.route": record.route,
        "http.response.status_code": record.status,
        "tool_proxy.request_id": record.id,
    }
    if record.tokens is not None:
        attributes["gen_ai.usage.input_tokens"] = record.tokens[0]
        attributes["gen_ai.usage.output_tokens"] = record.tokens[1]
    return attributes


def _error_type(status: int) -> str | None:
    """A server error is the span's error (HTTP semantic conventions: a 4xx is the
    client's)."""
    return str(status) if status >= 500 else None
