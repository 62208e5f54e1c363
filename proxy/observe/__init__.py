"""Observability: metrics, one log line per request with its id, optional tracing."""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxy.observe import logs, tracing

if TYPE_CHECKING:
    from proxy.config import Settings


def setup(settings: Settings) -> None:
    """What a serving process sets up once, before it serves (each worker process too):
    its log lines, and spans when the `OTEL_*` environment asks for them."""
    logs.configure(settings.log_level, settings.log_format)
    tracing.setup()
