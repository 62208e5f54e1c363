"""The Prometheus metrics at `/metrics`, named after the OpenTelemetry GenAI semantic
conventions where one exists (`gen_ai.client.token.usage` is `gen_ai_client_token_usage`, …).

Observed once per request, round or tool call — never per relayed chunk. Under several
worker processes, `PROMETHEUS_MULTIPROC_DIR` names a directory where each process writes its
values (prometheus_client's multiprocess mode), and a scrape of any one of them sums every
process's.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.requests import Request
from starlette.responses import Response

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"


M = TypeVar("M", bound=MetricWrapperBase)


class Metrics:
    """One app's metrics, in a registry of its own."""

    def __init__(self) -> None:
        if MULTIPROC_DIR in os.environ and values.ValueClass is values.MutexValue:
            # prometheus_client chooses where values live when it is first imported: a
            # worker forked after the directory was named chooses again, before any metric.
            values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
        self.registry = registry = CollectorRegistry()
        self._children: dict[tuple[int, tuple[str, ...]], MetricWrapperBase] = {}
        self.requests = Counter(
            "tool_proxy_requests_total",
            "Requests answered, by route template and status.",
            ["route", "status"],
            registry=registry,
        )
        self.rounds = Histogram(
            "tool_proxy_request_rounds",
            "Upstream rounds of one request that ran server tools.",
            ["route"],
            buckets=(1, 2, 3, 4, 5, 6, 8, 10, 16, 32),
            registry=registry,
        )
        self.tool_calls = Counter(
            "tool_proxy_tool_calls_total",
            "Server tool calls, by tool and outcome (ok, error, timeout).",
            ["gen_ai_tool_name", "outcome"],
            registry=registry,
        )
        self.tool_duration = Histogram(
            "gen_ai_execute_tool_duration_seconds",
            "How long one server tool call ran.",
            ["gen_ai_tool_name"],
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=registry,
        )
        self.time_to_first_byte = Histogram(
            "gen_ai_server_time_to_first_token_seconds",
            "Upstream time to the first byte of its response, per round.",
            ["route"],
            # the GenAI semantic conventions' advice for gen_ai.server.time_to_first_token
            buckets=(0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5),
            registry=registry,
        )
        self.overhead = Histogram(
            "tool_proxy_overhead_seconds",
            "The proxy's own time on a request that ran server tools (not the upstream's, a "
            "tool's or the client's).",
            ["route"],
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1),
            registry=registry,
        )
        self.tokens = Histogram(
            "gen_ai_client_token_usage",
            "Tokens of one request, summed over its rounds, by direction (input, output).",
            ["gen_ai_token_type"],
            # the GenAI semantic conventions' advice for gen_ai.client.token.usage
            buckets=(1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304),
            registry=registry,
        )
        self.hung_threads = Gauge(
            "tool_proxy_hung_tool_threads",
            "Threads still running a sync tool whose call already ended (timed out or cancelled).",
            multiprocess_mode="livesum",
            registry=registry,
        )

    def child(self, metric: M, *labels: str) -> M:
        """`metric.labels(*labels)`, looked up once: prometheus_client's own lookup checks
        and locks on every call (about 3 µs), on every request."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return cast(M, found)

    def endpoint(self, hung_threads: Callable[[], int]) -> Callable[[Request], Awaitable[Response]]:
        """The `/metrics` endpoint; `hung_threads` tells this process's count at scrape time."""

        async def scrape(request: Request) -> Response:
            self.hung_threads.set(hung_threads())
            return Response(generate_latest(self._collected()), media_type=CONTENT_TYPE_LATEST)

        return scrape

    def _collected(self) -> CollectorRegistry:
        """Every worker's values when they share a `PROMETHEUS_MULTIPROC_DIR`, else this
        app's."""
        if MULTIPROC_DIR not in os.environ:
            return self.registry
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
