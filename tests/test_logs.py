"""One structured line per request, with its id (`X-Request-ID` accepted or made, returned to
the client and sent upstream); a failing tool's traceback at debug; `serve` writes JSON lines
when asked, in place of uvicorn's access line, and never a key."""

from __future__ import annotations

import json
import logging
import re

import httpx
import httpx2
import openai
import pytest

from proxy import tool
from proxy.observe.logs import JSONFormatter, TextFormatter
from proxy.tools.registry import Registry
from tests.chunks import calls_round, text_round, usage
from tests.conftest import mocked_app, openai_client, weather
from tests.processes import served_proxy
from tests.upstream import Reply, ScriptedUpstream

USER = [{"role": "user", "content": "hi"}]


def access_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "proxy.access"]


@tool
def broken() -> str:
    """Always fails."""
    raise RuntimeError("the disk is full")


async def test_a_request_line_tells_its_id_route_rounds_tools_tokens_and_times(upstream, caplog):
    script = upstream(
        calls_round(("c1", "weather", "{}"), ("c2", "broken", "{}"), usage=usage(10, 5)),
        text_round("Sunny", usage=usage(20, 7)),
    )
    client = openai_client(mocked_app(Registry.of(weather, broken, plugin="tests")))
    caplog.set_level(logging.INFO, "proxy.access")
    raw = await client.chat.completions.with_raw_response.create(
        model="m", messages=USER, stream=True, extra_headers={"X-Request-ID": "trace-42"}
    )
    assert "".join([c.choices[0].delta.content or "" async for c in raw.parse() if c.choices])
    assert raw.headers["x-request-id"] == "trace-42"
    assert [h["x-request-id"] for h in script.headers] == ["trace-42", "trace-42"]
    [line] = access_lines(caplog)
    assert line.levelno == logging.INFO
    fields = json.loads(JSONFormatter().format(line))
    tools = fields.pop("tools")
    assert [(t["name"], t["outcome"]) for t in tools] == [("weather", "ok"), ("broken", "error")]
    assert all(t["ms"] >= 0 for t in tools)
    assert fields["overhead_ms"] > 0 and fields["duration_ms"] >= fields["overhead_ms"]
    assert fields["client"] == "127.0.0.1:123"  # httpx2's ASGITransport's client address
    assert {k: fields[k] for k in ("request_id", "method", "route", "path", "status")} == {
        "request_id": "trace-42",
        "method": "POST",
        "route": "/v1/chat/completions",
        "path": "/v1/chat/completions",
        "status": 200,
    }
    assert (fields["rounds"], fields["tokens_in"], fields["tokens_out"]) == (2, 30, 12)
    text = TextFormatter().format(line)
    assert "request_id=trace-42 method=POST route=/v1/chat/completions" in text
    assert re.search(r" tools=weather:ok:[\d.]+ms,broken:error:[\d.]+ms ", text)


@pytest.mark.parametrize(
    "given",
    [None, "has space", "x" * 129, "tab\there", "é"],
    ids=["none", "space", "long", "tab", "utf8"],
)
async def test_a_missing_or_unfit_request_id_is_replaced_by_a_new_one(upstream, caplog, given):
    script = upstream(Reply(b'{"object": "list", "data": []}', content_type="application/json"))
    app = mocked_app()
    caplog.set_level(logging.INFO, "proxy.access")
    headers = {} if given is None else {"x-request-id": given.encode()}
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), base_url="http://proxy.test"
    ) as http:
        answer = await http.get("/v1/models", headers=headers)
    made = answer.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    assert script.headers[0]["x-request-id"] == made
    [line] = access_lines(caplog)
    assert line.request_id == made and line.route == "/v1/{path}"


async def test_the_upstreams_own_request_id_is_passed_on_and_logged(upstream, caplog):
    upstream(
        Reply(b"{}", content_type="application/json", headers={"x-request-id": "req_upstream"})
    )
    caplog.set_level(logging.INFO, "proxy.access")
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=mocked_app()), base_url="http://proxy.test"
    ) as http:
        answer = await http.get("/v1/models", headers={"x-request-id": "mine"})
    assert answer.headers.get_list("x-request-id") == ["req_upstream"]
    [line] = access_lines(caplog)
    assert (line.request_id, line.upstream_request_id) == ("mine", "req_upstream")


async def test_a_failing_tool_is_logged_with_its_traceback_at_debug(upstream, caplog):
    upstream(calls_round(("c1", "broken", "{}")), text_round("Sorry"))
    client = openai_client(mocked_app(Registry.of(broken, plugin="tests")))
    caplog.set_level(logging.DEBUG, "proxy")
    stream = await client.chat.completions.create(model="m", messages=USER, stream=True)
    assert [c async for c in stream]
    [traced] = [r for r in caplog.records if r.exc_info]
    assert traced.levelno == logging.DEBUG and traced.name == "proxy.tools"
    assert "the disk is full" in JSONFormatter().format(traced)
    assert "Traceback" in TextFormatter().format(traced)


CLIENT_KEY = "sk-client-0c1d2e"
UPSTREAM_KEY = "sk-upstream-3f4a5b"


def test_serve_writes_json_lines_at_debug_and_no_key() -> None:
    """`serve --log-level debug --log-format json` (by its environment): every line it writes
    is JSON, a request's line has the id the client got, uvicorn's access line is gone, and
    no key is anywhere — through a failing tool and a refused key."""
    script = ScriptedUpstream(
        calls_round(("c1", "calculate", '{"expression": "1/0"}')),
        text_round("Undefined."),
    )
    output: list[str] = []
    with served_proxy(
        script,
        plugins="calculator",
        output=output,
        TOOL_PROXY_API_KEYS=CLIENT_KEY,
        TOOL_PROXY_UPSTREAM_API_KEY=UPSTREAM_KEY,
        TOOL_PROXY_LOG_LEVEL="debug",
        TOOL_PROXY_LOG_FORMAT="json",
    ) as base_url:
        client = openai.OpenAI(api_key=CLIENT_KEY, base_url=base_url, max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model="m", messages=[{"role": "user", "content": "1/0?"}], stream=True
        )
        assert "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
        refused = httpx.get(base_url + "/models", headers={"authorization": "Bearer sk-wrong"})
        assert refused.status_code == 401
    request_id = raw.headers["x-request-id"]
    logs = "\n".join(output)
    assert CLIENT_KEY not in logs and UPSTREAM_KEY not in logs and "sk-wrong" not in logs
    lines = [json.loads(line) for line in output[1].splitlines() if line.startswith("{")]
    assert len(lines) == len(output[1].splitlines()) - 1  # all but the start-up banner
    [chat] = [line for line in lines if line.get("request_id") == request_id]
    assert chat["tools"][0]["name"] == "calculate" and chat["tools"][0]["outcome"] == "error"
    assert [line["status"] for line in lines if line.get("route") == "/v1/{path}"] == [401]
    assert any(
        "Traceback" in line.get("traceback", "") for line in lines if line["level"] == "debug"
    )
    assert '"GET /models HTTP/1.1" 401' not in logs  # uvicorn's access line
    assert not any(line["logger"] == "uvicorn.access" for line in lines)


def test_a_list_in_a_plugins_log_line_is_written_not_lost() -> None:
    record = logging.LogRecord("plugin", logging.INFO, __file__, 1, "x", None, None)
    record.ids = [1, 2]
    assert 'ids="[1, 2]"' in TextFormatter().format(record)
