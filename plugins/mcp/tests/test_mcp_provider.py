"""The provider with real MCP servers (stdio, Streamable HTTP, legacy SSE): their tools as the
proxy's, their results and errors as the model reads them, and connections that outlive their
servers' restarts. (Through the proxy, with the `openai` client: tests/test_mcp.py.)"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from conftest import Served, started, stdio
from mcp_servers.paged import LONG
from openai_tool_proxy_mcp import MCPServers, connection
from openai_tool_proxy_mcp.connection import backoff

from proxy import Origin, Tool, ToolError

DEMO_TOOLS = ["echo", "about", "started", "sleep", "meet", "fail", "reject", "kinds", "add_tool"]


def tool(provider: MCPServers, name: str) -> Tool:
    (found,) = [t for t in provider.tools() if t.name == name]
    return found


async def call(provider: MCPServers, name: str, /, **arguments: Any) -> Any:
    return await tool(provider, name).handler(**arguments)


async def changed(provider: MCPServers, seen: Sequence[Tool]) -> Sequence[Tool]:
    """The provider's tools once they are not `seen` any more."""
    async with asyncio.timeout(5):
        while (now := provider.tools()) is seen:  # noqa: ASYNC110 - asked, as the proxy asks
            await asyncio.sleep(0.01)
    return now


async def test_stdio_servers_offer_every_page_of_tools_named_for_openai(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    tasks = asyncio.all_tasks()
    demo = stdio("demo.py", env={"DEMO_ENV": "from the config"}, cwd=str(tmp_path))
    with caplog.at_level(logging.WARNING):
        async with started({"paged": stdio("paged.py"), "demo": demo}) as provider:
            offered = [(t.name, t.origin) for t in provider.tools()]
            assert offered[:3] == [
                ("first", Origin("paged", "first")),
                ("files_read_all", Origin("paged", "files/read.all")),
                ("a" * 55 + "_" + offered[2][0][-8:], Origin("paged", LONG)),
            ]
            assert [name for name, _ in offered[3:]] == DEMO_TOOLS
            assert tool(provider, "first").description == "The first page's"  # its title
            assert await call(provider, "files_read_all") == "files/read.all called"
            assert await call(provider, "echo", text="hello") == "hello"
            about = json.loads(await call(provider, "about"))
            handler = tool(provider, "echo").handler
    assert caplog.messages == [
        "MCP server 'paged': tool 'broken' left out, the proxy cannot offer it: tool 'broken' "
        "has an invalid parameters schema: 5 is not valid under any of the given schemas"
    ]
    assert about["env"] == "from the config"
    assert (about["cwd"], about["client"]) == (str(tmp_path), "openai-tool-proxy")
    with pytest.raises(ProcessLookupError):  # ended, and reaped: no zombie
        os.kill(about["pid"], 0)
    assert asyncio.all_tasks() == tasks
    with pytest.raises(ToolError, match="is not connected: the proxy is shutting down"):
        await handler(text="too late")


async def test_an_http_servers_tools_keep_their_schema_description_and_hints(
    http_server: Served,
) -> None:
    web = {"url": http_server.url, "headers": {"X-Demo": "sent"}, "timeout": 2}
    only = {"allowed_tools": ["echo", "about", "sleep"], "blocked_tools": ["sleep"]}
    async with started({"web": {**web, **only}}) as provider:
        echo, about = provider.tools()
        told = json.loads(await about.handler())
    assert (echo.name, echo.description, about.name) == ("echo", "Say the text back.", "about")
    assert echo.parameters["properties"] == {"text": {"title": "Text", "type": "string"}}
    assert echo.origin == Origin("web", "echo", read_only=True)
    assert (echo.timeout, about.origin) == (2, Origin("web", "about"))
    assert (told["header"], told["client"]) == ("sent", "openai-tool-proxy")


async def test_calls_to_one_server_run_at_once(http_server: Served) -> None:
    async with started({"web": {"url": http_server.url}}) as provider:
        async with asyncio.timeout(5):  # each call returns once all five are running
            met = await asyncio.gather(
                *(call(provider, "meet", group="g", count=5) for _ in "12345")
            )
    assert met == ["5 met"] * 5


async def test_every_kind_of_result_from_a_real_server(http_server: Served) -> None:
    async with started({"web": {"url": http_server.url}}) as provider:
        text = await call(provider, "kinds")
    assert text == (
        "a text\n"
        "[image: image/png, 8 bytes]\n"
        "[audio: audio/wav, 4 bytes]\n"
        "[resource link: report.pdf <file:///reports/report.pdf>, application/pdf, 2048 bytes]: "
        "The report\n"
        "[resource <file:///notes.txt> (text/plain)]\n"
        "a note\n"
        "[resource <file:///data.bin>: binary data, 3 bytes]\n"
        '{"count": 6}'
    )


async def test_the_servers_error_and_refusal_are_its_own_words(http_server: Served) -> None:
    async with started({"web": {"url": http_server.url}}) as provider:
        with pytest.raises(ToolError) as failed:
            await call(provider, "fail", message="no such city: Atlantis")
        with pytest.raises(ToolError) as refused:
            await call(provider, "reject", value=7)
        assert await call(provider, "echo", text="still here") == "still here"
    assert str(failed.value) == "Error executing tool fail: no such city: Atlantis"
    assert str(refused.value) == "value 7 is out of range"


async def test_a_changed_tool_list_is_listed_again(
    http_server: Served, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "openai_tool_proxy_mcp")
    async with started({"web": {"url": http_server.url}}) as provider:
        before = provider.tools()
        assert provider.tools() is before  # unchanged: the same object
        assert await call(provider, "add_tool", name="late") == "added late"
        after = await changed(provider, before)
        assert [t.name for t in after] == [*DEMO_TOOLS, "late"]
        assert provider.tools() is after
        assert await call(provider, "late") == "late is here"
    assert "MCP server 'web' changed its tools: 10 now" in caplog.messages


async def test_a_restarted_http_server_is_reconnected_and_the_call_runs(
    http_server: Served,
) -> None:
    async with started({"web": {"url": http_server.url}}) as provider:
        tools = provider.tools()
        first = await call(provider, "started")
        http_server.stop()
        http_server.start()  # it knows no session: it answers 404 to the old one
        assert await call(provider, "started") not in (first, None)
        assert provider.tools() is tools  # the same tools: nothing to rebuild


async def test_a_connection_lost_again_soon_waits_before_reconnecting(
    http_server: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert [backoff(n) for n in range(9)] == [0, 0, 0.5, 1, 2, 4, 8, 16, 30]
    async with started({"web": {"url": http_server.url}}) as provider:
        http_server.stop()
        http_server.start()
        await call(provider, "started")  # its first loss: reconnected at once
        http_server.stop()
        http_server.start()
        with pytest.raises(ToolError) as waiting:  # lost again soon: reconnected after a while
            await call(provider, "started")
    assert str(waiting.value) == (
        "MCP server 'web' is not connected: the server ended the session (it restarted, or "
        "the session expired); reconnecting"
    )
    monkeypatch.setattr(connection, "HEALTHY", 0)  # every connection lasted long enough
    async with started({"web": {"url": http_server.url}}) as provider:
        for _ in range(3):
            http_server.stop()
            http_server.start()
            await call(provider, "started")


async def test_while_a_server_is_down_its_tools_say_so(http_server: Served) -> None:
    async with started({"web": {"url": http_server.url}}) as provider:
        http_server.stop()
        with pytest.raises(ToolError) as lost:
            await call(provider, "echo", text="anyone?")
        with pytest.raises(ToolError) as down:
            await call(provider, "echo", text="anyone?")
        assert [t.name for t in provider.tools()] == DEMO_TOOLS  # still offered, saying so
    assert str(lost.value) == (
        "the connection to MCP server 'web' was lost during the call; reconnecting"
    )
    assert str(down.value) == (
        "MCP server 'web' is not connected: ConnectError: All connection attempts failed; "
        "reconnecting"
    )


async def test_a_legacy_sse_server() -> None:
    served = Served("sse")
    served.start()
    old = {"type": "sse", "url": served.url, "headers": {"X-Demo": "over SSE"}}
    try:
        async with started({"old": old}) as provider:
            assert await call(provider, "echo", text="over SSE") == "over SSE"
            assert json.loads(await call(provider, "about"))["header"] == "over SSE"
    finally:
        served.stop()


async def test_a_server_that_cannot_start_is_logged_once_while_the_others_serve(
    http_server: Served, caplog: pytest.LogCaptureFixture
) -> None:
    late = Served("http")  # not started yet: its port refuses
    servers = {
        "web": {"url": http_server.url},
        "late": {"url": late.url},
        "missing": {"command": "no-such-mcp-server", "args": ["--port", "1"]},
        "quits": {"command": sys.executable, "args": ["-c", "pass"]},
    }
    with caplog.at_level(logging.DEBUG, "openai_tool_proxy_mcp"):
        async with started(servers) as provider:
            before = provider.tools()
            assert [t.name for t in before] == DEMO_TOOLS
            assert await call(provider, "echo", text="served") == "served"
            late.start()
            try:
                after = await changed(provider, before)  # retried until it answers
                assert len(after) == 2 * len(DEMO_TOOLS)  # each name twice: prefixed
                assert await call(provider, "late_started") != await call(provider, "web_started")
            finally:
                late.stop()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert sorted(errors) == [  # each once, whatever the order they fail in
        f"MCP server 'late' ({late.url}) could not start: ConnectError: All connection "
        "attempts failed; its tools are unavailable until it does, and it is retried in the "
        "background",
        "MCP server 'missing' (no-such-mcp-server) could not start: FileNotFoundError: "
        "[Errno 2] No such file or directory: 'no-such-mcp-server'; its tools are unavailable "
        "until it does, and it is retried in the background",
        f"MCP server 'quits' ({sys.executable}) could not start: the server closed the "
        "connection; its tools are unavailable until it does, and it is retried in the "
        "background",
    ]
    assert (
        "MCP server 'late': another attempt failed: ConnectError: All connection attempts failed"
        in caplog.messages
    )
    assert any(
        re.fullmatch(r"MCP server 'late' connected \(after \d+ failed attempts\): 9 tools", m)
        for m in caplog.messages
    )


async def test_a_server_that_does_not_answer_is_given_up_on_in_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as silent:  # connections wait in its queue: nothing answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/mcp"
        async with asyncio.timeout(5), started({"mute": {"url": url, "startup_timeout": 0.2}}):
            pass
    assert caplog.messages[0] == (
        f"MCP server 'mute' ({url}) could not start: no answer within 0.2 seconds "
        "(startup_timeout); its tools are unavailable until it does, and it is retried in the "
        "background"
    )
