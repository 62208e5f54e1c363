"""The `mcpServers` configuration: both sources, every transport's spellings, and a mistake
anywhere stopping start-up with the server, the field and the source named."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from openai_tool_proxy_mcp import MCPServers
from openai_tool_proxy_mcp.config import TOML_SOURCE, ServerConfig, read_servers

from proxy import ConfigError
from proxy.config import load_settings


def from_toml(**servers: Any) -> list[ServerConfig]:
    return read_servers({"mcpServers": servers}, {})


def from_file(tmp_path: Path, content: Any) -> list[ServerConfig]:
    path = tmp_path / "mcp.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content), "utf-8")
    return read_servers({}, {"TOOL_PROXY_MCP_CONFIG": str(path)})


README = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")


def readme_block(language: str, first_line: str) -> str:
    blocks: list[str] = re.findall(rf"```{language}\n(.*?)```", README, re.DOTALL)
    (found,) = [block for block in blocks if block.startswith(first_line)]
    return found


def test_the_readmes_examples_load_as_written(tmp_path: Path) -> None:
    from_json = from_file(tmp_path, readme_block("json", "{"))
    assert [(s.name, s.transport) for s in from_json] == [
        ("time", "stdio"),
        ("docs", "http"),
        ("legacy", "sse"),
    ]
    config = tmp_path / "proxy.toml"
    config.write_text(readme_block("toml", "# proxy.toml: MCP servers"), encoding="utf-8")
    table = load_settings(environ={}, config_file=config).plugin_config["mcp"]
    time, docs = read_servers(table, {})
    assert (time.args, time.allowed_tools) == (from_json[0].args, frozenset({"get_current_time"}))
    assert (docs.url, docs.timeout) == (from_json[1].url, 5)


def test_a_claude_desktop_file_is_read_as_it_is(tmp_path: Path) -> None:
    (fs,) = from_file(
        tmp_path,
        {
            "globalShortcut": "Ctrl+Space",  # the application's own settings: left alone
            "mcpServers": {
                "files": {
                    "command": "npx",
                    "args": ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"],
                    "env": {"DEBUG": "1"},
                }
            },
        },
    )
    assert (fs.name, fs.transport, fs.command) == ("files", "stdio", "npx")
    assert fs.args == ("-y", "@modelcontextprotocol/server-filesystem", "/tmp")
    assert dict(fs.env) == {"DEBUG": "1"}
    assert fs.source == str(tmp_path / "mcp.json")
    assert (fs.timeout, fs.startup_timeout, fs.allowed_tools, fs.disabled) == (
        None,
        30.0,
        None,
        False,
    )


@pytest.mark.parametrize(
    ("entry", "transport"),
    [
        ({"command": "server"}, "stdio"),
        ({"type": "stdio", "command": "server"}, "stdio"),
        ({"url": "https://mcp.example/mcp"}, "http"),
        ({"type": "http", "url": "https://mcp.example/mcp"}, "http"),
        ({"type": "streamable-http", "url": "https://mcp.example/mcp"}, "http"),
        ({"type": "streamableHttp", "url": "https://mcp.example/mcp"}, "http"),
        ({"type": "sse", "url": "https://mcp.example/sse"}, "sse"),
    ],
)
def test_every_spelling_of_the_transport(entry: dict[str, Any], transport: str) -> None:
    (server,) = from_toml(s=entry)
    assert server.transport == transport


def test_the_extra_fields() -> None:
    (server,) = from_toml(
        docs={
            "url": "http://localhost:8000/mcp",
            "headers": {"Authorization": "Bearer t"},
            "timeout": 2.5,
            "startup_timeout": 4,
            "allowed_tools": ["search", "read", "write"],
            "blocked_tools": ["write"],
            "autoApprove": ["search"],  # Cline's: means nothing here, tolerated
            "alwaysAllow": [],  # Roo Code's
        }
    )
    assert (server.timeout, server.startup_timeout) == (2.5, 4)
    assert dict(server.headers) == {"Authorization": "Bearer t"}
    assert [server.offers(t) for t in ("search", "write", "delete")] == [True, False, False]
    assert "Bearer" not in repr(server)  # headers and env may hold secrets


def test_log_lines_name_a_server_without_its_secrets() -> None:
    http, stdio = from_toml(
        http={"url": "https://user:pw@mcp.example:8443/v1/mcp?api_key=s3cret"},
        stdio={"command": "server", "args": ["--token", "s3cret"]},
    )
    assert (http.endpoint, stdio.endpoint) == ("https://mcp.example:8443/v1/mcp", "server")
    (plain,) = from_toml(plain={"url": "http://[::1]:8000/mcp"})
    assert plain.endpoint == "http://[::1]:8000/mcp"


def test_both_sources_together(tmp_path: Path) -> None:
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": {"a": {"command": "a"}}}), "utf-8")
    environ = {"TOOL_PROXY_MCP_CONFIG": str(path)}
    servers = read_servers({"mcpServers": {"b": {"url": "http://b/mcp"}}}, environ)
    assert [(s.name, s.source) for s in servers] == [("a", str(path)), ("b", TOML_SOURCE)]
    with pytest.raises(ConfigError) as raised:
        read_servers({"mcpServers": {"a": {"command": "other"}}}, environ)
    assert str(raised.value) == (
        f"mcpServers.a: configured twice, in {path} and in {TOML_SOURCE}; keep one"
    )


def test_disabled_servers_are_checked_and_left_out() -> None:
    provider = MCPServers()
    servers = {"on": {"command": "a"}, "off": {"command": "b", "disabled": True}}
    provider.configure({"mcpServers": servers})
    assert provider.servers() == ["on"]
    with pytest.raises(ConfigError, match=r"mcpServers\.off\.args"):
        provider.configure({"mcpServers": {"off": {"command": "b", "args": 1, "disabled": True}}})


def test_no_servers_configured_is_no_error_and_no_sdk_imported() -> None:
    """Installed, the plugin is loaded by every proxy: without a server it costs nothing."""
    code = (
        "import asyncio, sys\n"
        "from openai_tool_proxy_mcp import MCPServers\n"
        "provider = MCPServers()\n"
        "provider.configure({})\n"
        "asyncio.run(provider.start({}))\n"
        "print(provider.servers(), list(provider.tools()))\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'mcp', 'mcp_types', 'httpx2'}))\n"
    )
    environ = {k: v for k, v in os.environ.items() if k != "TOOL_PROXY_MCP_CONFIG"}
    ran = subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True)
    assert (ran.stdout, ran.stderr) == ("[] []\n[]\n", "")


BAD_FIELDS = [
    ("type", "websocket", "one of 'stdio', 'http', 'streamable-http', 'streamableHttp', 'sse'"),
    ("command", "", "a command to run (a non-empty string)"),
    ("args", "--port 3", "a list of strings"),
    ("args", ["--port", 3], "a list of strings"),
    ("env", {"PORT": 3}, "an object of strings"),
    ("cwd", 7, "a directory (a non-empty string)"),
    ("url", "localhost:8000/mcp", "an http:// or https:// URL"),
    ("headers", ["Authorization: x"], "an object of strings"),
    ("timeout", 0, "a positive number of seconds"),
    ("timeout", True, "a positive number of seconds"),
    ("startup_timeout", "30", "a positive number of seconds"),
    ("allowed_tools", "search", "a list of tool names"),
    ("blocked_tools", [1], "a list of tool names"),
    ("disabled", "yes", "true or false"),
]


@pytest.mark.parametrize(("field", "value", "expected"), BAD_FIELDS)
def test_a_malformed_field_is_named_with_its_server_and_file(
    tmp_path: Path, field: str, value: Any, expected: str
) -> None:
    entry = {"url": "http://localhost/mcp"} if field in ("url", "headers") else {"command": "x"}
    with pytest.raises(ConfigError) as raised:
        from_file(tmp_path, {"mcpServers": {"time": {**entry, field: value}}})
    assert str(raised.value) == (
        f"mcpServers.time.{field}: must be {expected}, got {value!r} (from {tmp_path}/mcp.json)"
    )


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"comand": "x"}, "unknown field(s) comand; known: allowed_tools, args, blocked_tools, "),
        ({}, ".command: missing: a server needs a command (stdio) or a url (HTTP)"),
        ({"command": "x", "url": "http://h/mcp"}, '.url: beside command: set "type" to'),
        ({"type": "sse", "command": "x"}, ".command: not used by an SSE server"),
        ({"command": "x", "headers": {}}, ".headers: not used by a stdio server"),
        ({"type": "http"}, ".url: missing: a Streamable HTTP server needs one"),
        ({"type": "stdio"}, ".command: missing: a stdio server needs one"),
        ("npx server", ": must be an object"),
    ],
)
def test_a_server_that_cannot_be_told_how_to_reach_is_named(entry: Any, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        from_toml(time=entry)
    text = str(raised.value)
    assert text.startswith("mcpServers.time") and message in text, text
    assert text.endswith(f"(from {TOML_SOURCE})")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "is not valid JSON: Expecting property name"),
        ("[]", 'must be a JSON object with an "mcpServers" object'),
        ('{"servers": {}}', 'must be a JSON object with an "mcpServers" object'),
        ('{"mcpServers": {"": {"command": "x"}}}', "mcpServers: a server needs a name"),
    ],
)
def test_a_file_that_is_no_mcp_servers_file(tmp_path: Path, content: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_file(tmp_path, content)


def test_a_missing_file_names_the_variable(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.json"
    with pytest.raises(ConfigError) as raised:
        read_servers({}, {"TOOL_PROXY_MCP_CONFIG": str(missing)})
    assert str(raised.value) == (
        f"cannot read {missing} ($TOOL_PROXY_MCP_CONFIG): No such file or directory"
    )


def test_a_table_that_is_no_mcp_servers_table_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"unknown field\(s\) servers in \[plugin_config\.mcp\]"):
        read_servers({"servers": {}}, {})
    with pytest.raises(ConfigError) as raised:
        read_servers({"mcpServers": ["time"]}, {})
    assert str(raised.value) == (
        f"mcpServers must be an object of servers by name (from {TOML_SOURCE})"
    )
