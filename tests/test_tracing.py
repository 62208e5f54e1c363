"""OpenTelemetry spans, with the SDK's in-memory exporter: one per request, per upstream round
and per tool call, named and annotated after the HTTP and GenAI semantic conventions; off
unless the `OTEL_*` environment asks, and then without importing OpenTelemetry at all."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from proxy import tool
from proxy.observe import tracing
from proxy.tools.registry import Registry
from tests.chunks import calls_round, text_round
from tests.conftest import mocked_app, openai_client, weather
from tests.processes import clean_env
from tests.upstream import Reply

USER = [{"role": "user", "content": "hi"}]


@tool
def broken() -> str:
    """Always fails."""
    raise KeyError("nothing here")


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    assert tracing.setup(provider)
    try:
        yield exporter
    finally:
        tracing.shutdown()


async def test_a_request_its_rounds_and_its_tool_calls_are_spans(upstream, exported):
    upstream(
        calls_round(("c1", "weather", "{}"), ("c2", "broken", "{}")),
        text_round("Sunny"),
    )
    client = openai_client(mocked_app(Registry.of(weather, broken, plugin="tests")))
    raw = await client.chat.completions.with_raw_response.create(
        model="gpt-x", messages=USER, stream=True
    )
    assert [c async for c in raw.parse()]
    spans: dict[str, list[ReadableSpan]] = {}
    for span in exported.get_finished_spans():
        spans.setdefault(span.name, []).append(span)
    assert sorted(spans) == [
        "POST /v1/chat/completions",
        "chat gpt-x",
        "execute_tool broken",
        "execute_tool weather",
    ]
    [request] = spans["POST /v1/chat/completions"]
    assert request.parent is None
    assert request.attributes["http.route"] == "/v1/chat/completions"
    assert request.attributes["http.response.status_code"] == 200
    assert request.attributes["tool_proxy.request_id"] == raw.headers["x-request-id"]
    rounds = spans["chat gpt-x"]
    assert len(rounds) == 2
    for child in [*rounds, *spans["execute_tool weather"], *spans["execute_tool broken"]]:
        assert child.parent is not None and child.parent.span_id == request.context.span_id
        assert child.context.trace_id == request.context.trace_id
    assert rounds[0].attributes["gen_ai.operation.name"] == "chat"
    assert rounds[0].attributes["gen_ai.request.model"] == "gpt-x"
    [ok] = spans["execute_tool weather"]
    assert dict(ok.attributes) == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "weather",
        "gen_ai.tool.call.id": "c1",
        "gen_ai.tool.type": "function",
    }
    assert ok.status.status_code is StatusCode.UNSET
    [failed] = spans["execute_tool broken"]
    assert failed.attributes["gen_ai.tool.call.id"] == "c2"
    assert failed.attributes["error.type"] == "KeyError"
    assert failed.status.status_code is StatusCode.ERROR


async def test_an_upstream_error_marks_the_round_and_the_request(upstream, exported):
    upstream(Reply(b'{"error": {"message": "down"}}', status=503, content_type="application/json"))
    client = openai_client(mocked_app())
    with pytest.raises(Exception, match="down"):
        await client.chat.completions.create(model="m", messages=USER, stream=True)
    by_name = {span.name: span for span in exported.get_finished_spans()}
    assert by_name["chat m"].status.status_code is StatusCode.ERROR
    assert by_name["chat m"].attributes["error.type"] == "APIError"
    request = by_name["POST /v1/chat/completions"]
    assert request.attributes["http.response.status_code"] == 503
    assert request.attributes["error.type"] == "503"


@pytest.mark.parametrize(
    ("environ", "asked"),
    [
        ({}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, False),
    ],
)
def test_the_standard_environment_decides(environ: dict[str, str], asked: bool) -> None:
    assert tracing.asked(environ) is asked


SERVED = """
import sys
from proxy.app import create_app
from proxy.config import Settings
from proxy.observe import tracing
from proxy.tools.registry import Registry
create_app(Settings(), Registry())
print(tracing.setup(), any(name.startswith("opentelemetry") for name in sys.modules))
"""


def test_off_by_default_and_nothing_of_opentelemetry_imported() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SERVED], env=clean_env(), capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["False", "False"]


def test_the_environment_turns_on_an_otlp_exporter() -> None:
    env = clean_env(
        OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9", OTEL_BSP_SCHEDULE_DELAY="60000"
    )
    done = subprocess.run(
        [sys.executable, "-c", SERVED], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["True", "True"]
