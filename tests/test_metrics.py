"""`/metrics`: after a tool round, the tool's counter and duration and the token counters moved
(Prometheus text format, read with prometheus_client's own parser); labels stay bounded; the
endpoint needs no client key; several worker processes are summed."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import httpx2
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

from proxy import tool
from proxy.observe.metrics import Metrics
from proxy.observe.record import Record, served, serving
from proxy.tools.registry import Registry
from proxy.tools.runner import ToolCall, ToolRunner
from tests.chunks import calls_round, completion, text_round, usage
from tests.conftest import mocked_app, openai_client, weather
from tests.events import body_round, call_events, message_events, stream_round
from tests.events import usage as responses_usage
from tests.processes import clean_env, free_port, spawn, stop, wait_healthy
from tests.servers import serve, upstream_app
from tests.upstream import ScriptedUpstream

USER = [{"role": "user", "content": "hi"}]
CHAT = "/v1/chat/completions"


async def scrape(app: Starlette) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the app's `/metrics`, by name and labels."""
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), base_url="http://proxy.test"
    ) as http:
        response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    return parse(response.text)


def parse(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict[Any, float], name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def test_a_tool_round_moves_the_tool_token_round_and_latency_metrics(upstream):
    upstream(
        calls_round(("c1", "weather", '{"location": "Oslo"}'), usage=usage(10, 5)),
        text_round("Sunny", usage=usage(20, 7)),
    )
    app = mocked_app()
    client = openai_client(app)
    stream = await client.chat.completions.create(model="m", messages=USER, stream=True)
    assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    samples = await scrape(app)
    tool_labels = {"gen_ai_tool_name": "weather"}
    assert value(samples, "tool_proxy_tool_calls_total", **tool_labels, outcome="ok") == 1
    assert value(samples, "gen_ai_execute_tool_duration_seconds_count", **tool_labels) == 1
    assert value(samples, "gen_ai_execute_tool_duration_seconds_sum", **tool_labels) > 0
    assert value(samples, "gen_ai_client_token_usage_sum", gen_ai_token_type="input") == 30
    assert value(samples, "gen_ai_client_token_usage_sum", gen_ai_token_type="output") == 12
    assert value(samples, "tool_proxy_requests_total", route=CHAT, status="200") == 1
    assert value(samples, "tool_proxy_request_rounds_sum", route=CHAT) == 2
    assert value(samples, "gen_ai_server_time_to_first_token_seconds_count", route=CHAT) == 2
    assert value(samples, "tool_proxy_overhead_seconds_count", route=CHAT) == 1
    assert value(samples, "tool_proxy_hung_tool_threads") == 0


async def test_responses_tokens_are_counted_by_direction(upstream):
    _, call = call_events(0, "c1", "weather", '{"location": "Oslo"}')
    _, answer = message_events(0, "Sunny")
    upstream(
        body_round("resp_1", call, usage=responses_usage(11, 3)),
        body_round("resp_2", answer, usage=responses_usage(40, 9)),
    )
    app = mocked_app()
    response = await openai_client(app).responses.create(model="m", input="weather?")
    assert response.output_text == "Sunny"
    samples = await scrape(app)
    assert value(samples, "gen_ai_client_token_usage_sum", gen_ai_token_type="input") == 51
    assert value(samples, "gen_ai_client_token_usage_sum", gen_ai_token_type="output") == 12
    assert value(samples, "tool_proxy_requests_total", route="/v1/responses", status="200") == 1


async def test_a_streamed_responses_round_counts_its_tokens_too(upstream):
    upstream(
        stream_round("resp_1", call_events(0, "c1", "weather", "{}"), usage=responses_usage(5, 1)),
        stream_round("resp_2", message_events(0, "Sunny"), usage=responses_usage(8, 2)),
    )
    app = mocked_app()
    stream = await openai_client(app).responses.create(model="m", input="hi", stream=True)
    assert [e.type async for e in stream][-1] == "response.completed"
    samples = await scrape(app)
    assert value(samples, "gen_ai_client_token_usage_sum", gen_ai_token_type="input") == 13
    assert value(samples, "gen_ai_client_token_usage_sum", gen_ai_token_type="output") == 3


release = threading.Event()


@tool(timeout=0.05)
def stuck() -> str:
    """Never answers in time."""
    release.wait(10)
    return "late"


@tool
def broken() -> str:
    """Always fails."""
    raise RuntimeError("no")


async def test_tool_outcomes_are_ok_error_or_timeout_and_hung_threads_are_shown(upstream):
    upstream(
        calls_round(("c1", "stuck", "{}"), ("c2", "broken", "{}"), ("c3", "weather", "{}")),
        text_round("done"),
    )
    app = mocked_app(Registry.of(stuck, broken, weather, plugin="tests"))
    try:
        stream = await openai_client(app).chat.completions.create(
            model="m", messages=USER, stream=True
        )
        assert "".join([c.choices[0].delta.content or "" async for c in stream]) == "done"
        samples = await scrape(app)
    finally:
        release.set()
    calls = "tool_proxy_tool_calls_total"
    assert value(samples, calls, gen_ai_tool_name="stuck", outcome="timeout") == 1
    assert value(samples, calls, gen_ai_tool_name="broken", outcome="error") == 1
    assert value(samples, calls, gen_ai_tool_name="weather", outcome="ok") == 1
    assert value(samples, "tool_proxy_hung_tool_threads") == 1
    for _ in range(200):  # the released thread ends: a scrape tells it at once
        if value(await scrape(app), "tool_proxy_hung_tool_threads") == 0:
            break
        await asyncio.sleep(0.01)
    else:
        raise AssertionError("the hung thread is still counted")


async def test_route_labels_are_templates_never_raw_paths(upstream):
    upstream(completion({"role": "assistant", "content": "hi"}))
    app = mocked_app()
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), base_url="http://proxy.test"
    ) as http:
        assert (await http.get("/v1/models/gpt-4o")).status_code == 200
        assert (await http.get("/nowhere/abc")).status_code == 404
    samples = await scrape(app)
    requests = "tool_proxy_requests_total"
    assert value(samples, requests, route="/v1/{path}", status="200") == 1
    assert value(samples, requests, route="unmatched", status="404") == 1
    assert not any("gpt-4o" in str(key) or "abc" in str(key) for key in samples)


async def test_metrics_need_no_client_key(upstream):
    upstream(calls_round(("c1", "weather", "{}")), text_round("Sunny"))
    app = mocked_app(api_keys=("sk-client",), upstream_api_key="none")
    stream = await openai_client(app).chat.completions.create(model="m", messages=USER, stream=True)
    assert [c async for c in stream]
    samples = await scrape(app)  # no key sent
    assert value(samples, "tool_proxy_requests_total", route=CHAT, status="200") == 1


def test_several_worker_processes_are_summed(redis_url: str, tmp_path: Path) -> None:
    """`serve --workers 2`: each worker counts in its own process, and a scrape of either one
    sums both (prometheus_client's multiprocess mode)."""
    script = ScriptedUpstream()
    port = free_port()
    with serve(upstream_app(script)) as upstream_url:
        env = clean_env(TOOL_PROXY_PLUGINS="calculator", TOOL_PROXY_STORE=redis_url)
        args = ["serve", "--port", str(port), "--upstream", upstream_url + "/v1", "--workers", "2"]
        proc = spawn(args, env, tmp_path)
        try:
            wait_healthy(proc, f"http://127.0.0.1:{port}/health/liveness")
            with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
                for _ in range(40):  # new connections: the kernel spreads them over both
                    http.get("/health", headers={"connection": "close"})
                samples = parse(http.get("/metrics").text)
        finally:
            stop(proc)
    assert value(samples, "tool_proxy_requests_total", route="/health", status="200") == 40


def test_a_scrape_shows_the_other_processes_values(tmp_path: Path) -> None:
    """With `PROMETHEUS_MULTIPROC_DIR` set, another process's values (here a process that
    counted a request of its own) are in every process's `/metrics`."""
    other = (
        "from proxy.observe.metrics import Metrics\n"
        "Metrics().requests.labels('/v1/other', '200').inc(3)\n"
    )
    env = clean_env(PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    subprocess.run([sys.executable, "-c", other], env=env, check=True, timeout=30)
    script = ScriptedUpstream()
    port = free_port()
    with serve(upstream_app(script)) as upstream_url:
        args = ["serve", "--port", str(port), "--upstream", upstream_url + "/v1"]
        proc = spawn(args, {**env, "TOOL_PROXY_PLUGINS": "calculator"}, Path.cwd())
        try:
            wait_healthy(proc, f"http://127.0.0.1:{port}/health")
            samples = parse(httpx.get(f"http://127.0.0.1:{port}/metrics").text)
        finally:
            stop(proc)
    assert value(samples, "tool_proxy_requests_total", route="/v1/other", status="200") == 3
    assert value(samples, "tool_proxy_requests_total", route="/health", status="200") >= 1


async def test_a_call_to_no_registered_tool_is_counted_under_one_name() -> None:
    """A model may make up any name: the label stays bounded."""
    metrics = Metrics()
    token = serving(Record("r", metrics=metrics))
    try:
        result = await ToolRunner(Registry.of(weather, plugin="tests"), 1).run(
            ToolCall("c1", "made_up_name", "{}")
        )
    finally:
        served(token)
    assert not result.ok
    samples = parse(generate_latest(metrics.registry).decode())
    labels = {"gen_ai_tool_name": "unknown", "outcome": "error"}
    assert value(samples, "tool_proxy_tool_calls_total", **labels) == 1
    assert "made_up_name" not in str(samples)


async def test_hung_threads_are_counted_as_a_call_ends_not_only_at_a_scrape() -> None:
    """Under several workers a scrape reaches one of them: the others' counts are those
    their last tool call left."""
    gate = threading.Event()

    @tool(timeout=0.01)
    def held() -> str:
        """Holds its thread."""
        gate.wait(10)
        return "late"

    metrics = Metrics()
    token = serving(Record("r", metrics=metrics))
    runner = ToolRunner(Registry.of(held, plugin="tests"), 1)
    try:
        assert not (await runner.run(ToolCall("c1", "held", "{}"))).ok
        assert metrics.registry.get_sample_value("tool_proxy_hung_tool_threads") == 1
    finally:
        served(token)
        gate.set()
        runner.close()


async def test_a_refused_request_is_labelled_with_the_route_that_would_serve_it(upstream):
    app = mocked_app(api_keys=("sk-client",), upstream_api_key="none")
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), base_url="http://proxy.test"
    ) as http:
        # GET matches the chat route's path only; the passthrough route is the full match.
        assert (await http.get("/v1/chat/completions")).status_code == 401
    samples = await scrape(app)
    requests = "tool_proxy_requests_total"
    assert value(samples, requests, route="/v1/{path}", status="401") == 1
