"""The ASGI middleware that observes every request: its id (accepted or made, sent upstream
with the request and back with the response), its span, and, once the response is over,
its metrics and log line.

Per relayed chunk it adds one plain function call (`send` passed through), no more.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from proxy.observe import logs, tracing
from proxy.observe.metrics import Metrics
from proxy.observe.record import Record, served, serving
from proxy.observe.request_id import HEADER, accepted


class Observed:
    """`routes` are the app's: a request refused before routing (a wrong key, a body too
    large) is still labelled with the route it asked for."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = [(name, value) for name, value in scope["headers"] if name != HEADER]
        given = next((value for name, value in scope["headers"] if name == HEADER), None)
        record = Record(accepted(given), scope, metrics=self.metrics)
        headers.append((HEADER, record.id.encode()))
        scope["headers"] = headers  # what the upstream gets too
        own_id = (HEADER, headers[-1][1])

        def sending(message: Message) -> Awaitable[None]:
            if message["type"] == "http.response.start":
                record.status = message["status"]
                answer = message.setdefault("headers", [])
                theirs = next((value for name, value in answer if name == HEADER), None)
                if theirs is None:
                    answer.append(own_id)
                elif theirs != own_id[1]:  # the upstream's own id: kept, and logged
                    record.upstream_id = theirs.decode("latin-1")
            return send(message)

        token = serving(record)
        method = scope["method"]
        attributes = {"http.request.method": method, "url.path": scope["path"]}
        try:
            with tracing.current(method, attributes) as span:
                try:
                    await self.app(scope, receive, sending)
                except BaseException:
                    record.status = record.status or 500
                    raise
                finally:
                    if "route" not in scope:  # refused before routing
                        scope["route"] = self._route_of(scope)
                    tracing.finish(span, _span_attributes(record), _error_type(record.status))
                    if span is not None:
                        span.update_name(f"{method} {record.route}")
        finally:
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
