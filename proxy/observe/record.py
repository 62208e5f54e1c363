"""What is known about one request as it runs — its id, rounds, tool calls, tokens — kept in a
context variable, so the engine and the tool runner add to it without being handed it; and
the metrics observed as each part ends."""

from __future__ import annotations

from collections.abc import MutableMapping
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

from proxy.loop.stopwatch import Stopwatch
from proxy.observe.metrics import Metrics
from proxy.observe.tokens import tokens_of

UNMATCHED = "unmatched"  # the route label of a path no route serves


@dataclass(frozen=True, slots=True)
class ToolUse:
    name: str
    outcome: str  # ok, error or timeout
    seconds: float


@dataclass(slots=True)
class Record:
    id: str
    scope: MutableMapping[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=perf_counter)
    status: int = 0
    rounds: int = 0
    tools: list[ToolUse] = field(default_factory=list)
    tokens: tuple[int, int] | None = None
    first_bytes: list[float] = field(default_factory=list)  # each round's upstream, seconds
    watch: Stopwatch | None = None  # the proxy's own time, on a request that ran tools
    upstream_id: str | None = None  # the upstream's own x-request-id, when it sent one
    metrics: Metrics | None = None  # where it is counted (none outside a served request)

    @property
    def route(self) -> str:
        """The route template that served the request (bounded, unlike the path)."""
        route = self.scope.get("route")
        path = getattr(route, "path_format", None)  # `/v1/{path}`, converters left out
        return path if isinstance(path, str) else UNMATCHED

    def first_byte(self, seconds: float) -> None:
        """A round's upstream answered its first byte `seconds` after the request went
        (observed with the rest, when the response is over: not on the way to the client)."""
        self.first_bytes.append(seconds)

    def tool_called(self, name: str, outcome: str, seconds: float, hung_threads: int) -> None:
        """A tool call ended; `hung_threads` are the sync tool threads hung now."""
        self.tools.append(ToolUse(name, outcome, seconds))
        if self.metrics is not None:
            self.metrics.child(self.metrics.tool_calls, name, outcome).inc()
            self.metrics.child(self.metrics.tool_duration, name).observe(seconds)
            self.metrics.hung_threads.set(hung_threads)

    def usage(self, usage: dict[str, Any] | None) -> None:
        """The request's usage, summed over its rounds."""
        self.tokens = tokens_of(usage)

    def ended(self) -> None:
        """The response is over: the request's own metrics."""
        metrics = self.metrics
        if metrics is None:
            return
        route = self.route
        metrics.child(metrics.requests, route, str(self.status)).inc()
        for seconds in self.first_bytes:
            metrics.child(metrics.time_to_first_byte, route).observe(seconds)
        if self.rounds:
            metrics.child(metrics.rounds, route).observe(self.rounds)
        if self.watch is not None:
            metrics.child(metrics.overhead, route).observe(self.watch.total)
        if self.tokens is not None:
            metrics.child(metrics.tokens, "input").observe(self.tokens[0])
            metrics.child(metrics.tokens, "output").observe(self.tokens[1])


_current: ContextVar[Record | None] = ContextVar("proxy_request", default=None)


def current() -> Record:
    """The record of the request being served; outside one (the engine driven directly), a
    record of its own that nothing logs."""
    record = _current.get()
    return record if record is not None else Record("")


def serving(record: Record) -> Token[Record | None]:
    """Make `record` the current one, until `served` is given the returned token."""
    return _current.set(record)


def served(token: Token[Record | None]) -> None:
    _current.reset(token)
