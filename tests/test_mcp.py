"""The MCP plugin end to end: real MCP servers (the demo server over stdio and Streamable HTTP,
and the reference `mcp-server-time` from PyPI) behind the proxy, driven with the real `openai`
client in both APIs; `openai-tool-proxy tools` run for real. (The plugin's own tests:
plugins/mcp/tests; OpenAI's hosted `mcp` tool: tests/test_hosted_mcp.py.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import openai
import pytest
from openai_tool_proxy_mcp import MCPServers

from proxy.tools.registry import Registry
from tests.chunks import calls_round, text_round
from tests.conftest import mocked_app, openai_client
from tests.events import call_events, message_events, stream_round
from tests.processes import clean_env, free_port, run_cli, served_proxy, stop, wait_healthy
from tests.upstream import ScriptedUpstream

DEMO = Path(__file__).parent.parent / "plugins" / "mcp" / "tests" / "mcp_servers" / "demo.py"
LOCAL = {"command": sys.executable, "args": [str(DEMO)]}  # the demo server over stdio
TIME = {"command": sys.executable, "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"]}


@pytest.fixture(scope="module")
def web() -> Iterator[str]:
    """The demo server over Streamable HTTP, in a process of its own: its URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(DEMO), "http", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        wait_healthy(process, f"http://127.0.0.1:{port}/health")
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        stop(process)


@asynccontextmanager
async def proxy_with(**servers: dict[str, Any]) -> AsyncIterator[openai.AsyncOpenAI]:
    """The proxy app in process with the MCP plugin serving `servers`, from its start to its
    shutdown; a client of it."""
    registry = Registry()
    registry.provide(MCPServers(), "mcp")
    app = mocked_app(registry, plugin_config={"mcp": {"mcpServers": servers}})
    async with app.router.lifespan_context(app):
        yield openai_client(app)


async def chat(client: openai.AsyncOpenAI) -> str:
    stream = await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "go"}], stream=True
    )
    return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])


def results(request: dict[str, Any]) -> dict[str, str]:
    """The tool results a follow-up Chat request carries, by call id."""
    return {m["tool_call_id"]: m["content"] for m in request["messages"] if m["role"] == "tool"}


async def test_both_apis_stream_answers_from_stdio_http_and_third_party_servers(
    upstream: Callable[..., ScriptedUpstream], web: str
) -> None:
    tokyo = '{"timezone": "Asia/Tokyo"}'
    script = upstream(
        calls_round(
            ("call_1", "local_echo", '{"text": "from stdio"}'),
            ("call_2", "web_echo", '{"text": "over HTTP"}'),
            ("call_3", "get_current_time", tokyo),
        ),
        text_round("from stdio, over HTTP, in Tokyo"),
        stream_round("resp_1", call_events(0, "call_4", "web_kinds", "{}")),
        stream_round("resp_2", message_events(0, "a text, and more")),
    )
    async with proxy_with(local=LOCAL, web={"url": web}, time=TIME) as client:
        assert await chat(client) == "from stdio, over HTTP, in Tokyo"
        async with client.responses.stream(model="m", input="go") as stream:
            final = await stream.get_final_response()
    offered = [t["function"]["name"] for t in script.requests[0]["tools"]]
    assert {"local_echo", "web_echo", "get_current_time", "convert_time"} <= set(offered)
    answers = results(script.requests[1])
    assert (answers["call_1"], answers["call_2"]) == ("from stdio", "over HTTP")
    assert json.loads(answers["call_3"])["timezone"] == "Asia/Tokyo"
    assert final.output_text == "a text, and more"
    (output,) = [i for i in script.requests[3]["input"] if i.get("type") == "function_call_output"]
    assert output["output"].startswith("a text\n[image: image/png, 8 bytes]\n")


def test_served_a_killed_stdio_server_is_restarted_and_the_next_call_works(
    tmp_path: Path,
) -> None:
    config = tmp_path / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {"local": LOCAL}}), encoding="utf-8")
    about = calls_round(("call_1", "about", "{}"))
    script = ScriptedUpstream(about, text_round("one"), about, text_round("two"))
    printed: list[str] = []
    env = {"TOOL_PROXY_MCP_CONFIG": str(config)}
    with served_proxy(script, plugins="mcp", output=printed, **env) as url:
        client = openai.OpenAI(base_url=url, api_key="sk-user", max_retries=0)
        assert ask(client) == "one"
        first = json.loads(results(script.requests[1])["call_1"])["pid"]
        os.kill(first, signal.SIGKILL)
        gone(first)  # the proxy saw its end, and reaped it
        assert ask(client) == "two"
    assert json.loads(results(script.requests[3])["call_1"])["pid"] != first
    _, stderr = printed
    assert "MCP server 'local' disconnected: the server closed the connection; reconnecting" in (
        stderr
    )
    assert "MCP server 'local' reconnected" in stderr


def ask(client: openai.OpenAI) -> str:
    stream = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "go"}], stream=True
    )
    return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


def gone(pid: int) -> None:
    """Return once process `pid` ended and was reaped."""
    end = time.monotonic() + 5
    while time.monotonic() < end:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.01)
    pytest.fail(f"process {pid} is still there")


async def test_a_slow_tool_times_out_the_stream_carries_on_and_the_server_stays_usable(
    upstream: Callable[..., ScriptedUpstream], web: str
) -> None:
    script = upstream(
        calls_round(("call_1", "sleep", '{"seconds": 5}')),
        text_round("it was slow"),
        calls_round(("call_2", "echo", '{"text": "still here"}')),
        text_round("fine"),
    )
    async with proxy_with(web={"url": web, "timeout": 0.3}) as client:
        assert await chat(client) == "it was slow"
        assert await chat(client) == "fine"
    assert results(script.requests[1]) == {"call_1": "error: 'sleep' timed out after 0.3 seconds"}
    assert results(script.requests[3]) == {"call_2": "still here"}


async def test_the_servers_error_and_refusal_reach_the_model_as_errors(
    upstream: Callable[..., ScriptedUpstream], web: str
) -> None:
    script = upstream(
        calls_round(
            ("call_1", "fail", '{"message": "no such city: Atlantis"}'),
            ("call_2", "reject", '{"value": 7}'),
        ),
        text_round("sorry"),
    )
    async with proxy_with(web={"url": web}) as client:
        assert await chat(client) == "sorry"
    assert results(script.requests[1]) == {
        "call_1": "error: Error executing tool fail: no such city: Atlantis",
        "call_2": "error: value 7 is out of range",
    }


def test_the_tools_command_lists_mcp_tools_with_their_server(web: str, tmp_path: Path) -> None:
    config = tmp_path / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {"local": LOCAL, "web": {"url": web}}}), "utf-8")
    env = clean_env(TOOL_PROXY_PLUGINS="mcp", TOOL_PROXY_MCP_CONFIG=str(config))
    listing = run_cli(["tools"], env, tmp_path)
    assert listing.returncode == 0, listing.stderr
    assert "local_echo  (plugin: mcp, server: local)\n    Say the text back.\n" in listing.stdout
    assert "web_echo  (plugin: mcp, server: web)\n    Say the text back.\n" in listing.stdout


def test_a_malformed_config_stops_the_proxy_naming_the_server_and_field(tmp_path: Path) -> None:
    config = tmp_path / "mcp.json"
    config.write_text('{"mcpServers": {"time": {"command": "uvx", "args": "mcp-server-time"}}}')
    env = clean_env(TOOL_PROXY_PLUGINS="mcp", TOOL_PROXY_MCP_CONFIG=str(config))
    listing = run_cli(["tools"], env, tmp_path)
    assert (listing.returncode, listing.stdout) == (2, "")
    assert listing.stderr == (
        "openai-tool-proxy: plugin 'mcp': mcpServers.time.args: must be a list of strings, got "
        f"'mcp-server-time' (from {config})\n"
    )
