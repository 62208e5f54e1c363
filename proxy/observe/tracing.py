"""OpenTelemetry spans, optional (`pip install 'openai-tool-proxy[tracing]'`) and off unless
the standard `OTEL_*` environment asks for an exporter: then one span per request
(`{method} {route}`), per upstream round (`chat {model}`) and per tool call
(`execute_tool {gen_ai.tool.name}`), after the HTTP and GenAI semantic conventions.

Off, nothing of OpenTelemetry is imported, and each hook is one `None` check. Set up in each
serving process (each worker, after the fork: the SDK's export thread is per process) and shut
down with its app, which exports the spans still batched: a worker leaves by `os._exit`, past
the SDK's own atexit hook.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

log = logging.getLogger("proxy")

_provider: TracerProvider | None = None
_tracer: Tracer | None = None


def asked(environ: Mapping[str, str]) -> bool:
    """Whether the `OTEL_*` environment asks for traces to be exported."""
    if environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    exporter = environ.get("OTEL_TRACES_EXPORTER")
    if exporter is not None:
        return exporter.strip().lower() not in ("", "none")
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def setup(provider: TracerProvider | None = None) -> bool:
    """Trace with `provider`, or, when the environment asks for it, with an OTLP (HTTP)
    exporter configured by that environment; whether spans are made from now on."""
    global _provider, _tracer
    if provider is None:
        if not asked(os.environ):
            return False
        try:
            provider = _otlp_provider()
        except ImportError as exc:
            log.warning(
                "OTEL_* asks for traces but OpenTelemetry is not installed (%s): "
                "pip install 'openai-tool-proxy[tracing]'",
                exc,
            )
            return False
    _provider = provider
    _tracer = provider.get_tracer("openai-tool-proxy")
    return True


def _otlp_provider() -> TracerProvider:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES still win over this default.
    resource = Resource.create({"service.name": "openai-tool-proxy"})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def shutdown() -> None:
    """Export the spans not yet exported, and make no spans again."""
    global _provider, _tracer
    if _provider is not None:
        _provider.shutdown()
    _provider = _tracer = None


def start(name: str, attributes: dict[str, Any]) -> Span | None:
    """A span under the current one, not made current itself (for code that yields in
    between); None when tracing is off. End it with `end`."""
    return None if _tracer is None else _tracer.start_span(name, attributes=attributes)


# What a hook gives when tracing is off: one shared block that does nothing.
_OFF: contextlib.nullcontext[None] = contextlib.nullcontext()


def current(
    name: str, attributes: dict[str, Any]
) -> contextlib.AbstractContextManager[Span | None]:
    """A span under the current one and current for the block (what runs in it — a tool's
    own instrumented calls — nests under it); None when tracing is off. Ended on leaving."""
    if _tracer is None:
        return _OFF
    return _tracer.start_as_current_span(
        name, attributes=attributes, record_exception=False, set_status_on_exception=False
    )


def upstream_round(request: Mapping[str, Any]) -> contextlib.AbstractContextManager[Span | None]:
    """The span of one upstream round (`chat {model}`), not current (the engine yields in
    it), ended on leaving the block; failed with the type of an exception that left it."""
    return _OFF if _tracer is None else _round(request)


@contextlib.contextmanager
def _round(request: Mapping[str, Any]) -> Iterator[Span | None]:
    model = request.get("model")
    attributes: dict[str, Any] = {"gen_ai.operation.name": "chat"}
    if isinstance(model, str):
        attributes["gen_ai.request.model"] = model
    span = start(f"chat {model}" if isinstance(model, str) else "chat", attributes)
    try:
        yield span
    except BaseException as exc:
        end(span, type(exc).__qualname__)
        raise
    end(span)


def tool_call(name: str, call_id: str) -> contextlib.AbstractContextManager[Span | None]:
    """The span of one tool call (`execute_tool {gen_ai.tool.name}`), current while it runs."""
    attributes = {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": name,
        "gen_ai.tool.call.id": call_id,
        "gen_ai.tool.type": "function",
    }
    return current(f"execute_tool {name}", attributes)


def end(span: Span | None, error_type: str | None = None) -> None:
    """Mark the span failed with `error_type` if one is given, and end it."""
    if span is not None:
        finish(span, {}, error_type)
        span.end()


def finish(span: Span | None, attributes: dict[str, Any], error_type: str | None = None) -> None:
    """Add `attributes`, and mark the span failed with `error_type` if one is given."""
    if span is None:
        return
    span.set_attributes(attributes)
    if error_type is not None:
        from opentelemetry.trace import Status, StatusCode

        span.set_attribute("error.type", error_type)
        span.set_status(Status(StatusCode.ERROR))
