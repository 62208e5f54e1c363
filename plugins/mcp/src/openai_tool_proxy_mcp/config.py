"""The `mcpServers` format other MCP clients use (Claude Desktop, Cursor, VS Code, Cline), read
from the JSON file `$TOOL_PROXY_MCP_CONFIG` and the proxy's `[plugin_config.mcp]` table, and
checked whole before anything starts: a mistake stops start-up with its server and field named,
as a typo left unnoticed would quietly leave a server out."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from proxy import ConfigError

ENV = "TOOL_PROXY_MCP_CONFIG"
TOML_SOURCE = "[plugin_config.mcp] of the proxy's config file"
STARTUP_TIMEOUT = 30.0  # seconds to start (or reach) a server and list its tools, unless set

Transport = Literal["stdio", "http", "sse"]

# The spellings of `type` in use; without one, `command` means stdio and `url` Streamable HTTP.
TYPES: dict[str, Transport] = {
    "stdio": "stdio",
    "http": "http",
    "streamable-http": "http",
    "streamableHttp": "http",
    "sse": "sse",
}
STDIO_FIELDS = frozenset({"command", "args", "env", "cwd"})
HTTP_FIELDS = frozenset({"url", "headers"})
COMMON_FIELDS = frozenset(
    {"type", "timeout", "startup_timeout", "allowed_tools", "blocked_tools", "disabled"}
)
# Fields of other clients that mean nothing here, accepted so that their files load as they
# are: Cline's and Roo Code's lists of tools their UI runs without asking (the proxy never asks).
IGNORED_FIELDS = frozenset({"autoApprove", "alwaysAllow"})
KNOWN_FIELDS = STDIO_FIELDS | HTTP_FIELDS | COMMON_FIELDS


@dataclass(frozen=True)
class ServerConfig:
    """One MCP server: how to reach it, and what the proxy takes from it."""

    name: str
    transport: Transport
    source: str  # where it was configured, for messages
    command: str = ""
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict, repr=False)  # may hold secrets
    cwd: str | None = None
    url: str = ""
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)  # may hold secrets
    timeout: float | None = None  # per call; None: the proxy's tool timeout
    startup_timeout: float = STARTUP_TIMEOUT
    allowed_tools: frozenset[str] | None = None  # None: every tool
    blocked_tools: frozenset[str] = frozenset()
    disabled: bool = False

    @property
    def endpoint(self) -> str:
        """What is started or reached, for log lines: the command without its arguments, the
        URL without credentials or query — any of them may hold a secret."""
        if self.transport == "stdio":
            return self.command
        url = urlsplit(self.url)
        return f"{url.scheme}://{url.netloc.rpartition('@')[2]}{url.path}"

    def offers(self, tool: str) -> bool:
        """Whether the model may see the server's tool `tool` (`allowed_tools`, `blocked_tools`)."""
        allowed = self.allowed_tools is None or tool in self.allowed_tools
        return allowed and tool not in self.blocked_tools


def read_servers(table: Mapping[str, Any], environ: Mapping[str, str]) -> list[ServerConfig]:
    """Every server configured: those of the file `$TOOL_PROXY_MCP_CONFIG`, then those of the
    `[plugin_config.mcp]` table; `ConfigError` names what is wrong and where."""
    unknown = sorted(set(table) - {"mcpServers"})
    if unknown:
        raise ConfigError(
            f"unknown field(s) {', '.join(unknown)} in {TOML_SOURCE}; known: mcpServers"
        )
    servers: dict[str, ServerConfig] = {}
    path = environ.get(ENV)
    if path:
        servers.update(_servers(_json_file(Path(path)).get("mcpServers"), path))
    for name, server in _servers(table.get("mcpServers", {}), TOML_SOURCE).items():
        if name in servers:
            raise ConfigError(
                f"mcpServers.{name}: configured twice, in {servers[name].source} and in "
                f"{TOML_SOURCE}; keep one"
            )
        servers[name] = server
    return list(servers.values())


def _json_file(path: Path) -> dict[str, Any]:
    where = f"{path} (${ENV})"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {where}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{where} is not UTF-8 text: {exc.reason}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("mcpServers"), dict):
        raise ConfigError(
            f'{where} must be a JSON object with an "mcpServers" object, as '
            '{"mcpServers": {"NAME": {"command": "..."}}}'
        )
    return data  # other top-level keys are another application's settings: left alone


def _servers(value: Any, source: str) -> dict[str, ServerConfig]:
    if not isinstance(value, dict):
        raise ConfigError(f"mcpServers must be an object of servers by name (from {source})")
    return {name: _server(name, entry, source) for name, entry in value.items()}


def _server(name: str, entry: Any, source: str) -> ServerConfig:
    def problem(field_name: str, text: str) -> ConfigError:
        return ConfigError(f"mcpServers.{name}.{field_name}: {text} (from {source})")

    if not name.strip():
        raise ConfigError(f"mcpServers: a server needs a name, not {name!r} (from {source})")
    if not isinstance(entry, dict):
        raise ConfigError(f"mcpServers.{name}: must be an object (from {source})")
    unknown = sorted(set(entry) - KNOWN_FIELDS - IGNORED_FIELDS)
    if unknown:
        raise ConfigError(
            f"mcpServers.{name}: unknown field(s) {', '.join(unknown)}; known: "
            f"{', '.join(sorted(KNOWN_FIELDS))} (from {source})"
        )
    for field_name, (check, expected) in _CHECKS.items():
        if field_name in entry and not check(entry[field_name]):
            raise problem(field_name, f"must be {expected}, got {entry[field_name]!r}")
    transport = _transport(entry, problem)
    own = STDIO_FIELDS if transport == "stdio" else HTTP_FIELDS
    foreign = sorted(((STDIO_FIELDS | HTTP_FIELDS) - own) & set(entry))
    if foreign:
        raise problem(foreign[0], f"not used by {_KIND[transport]}")
    needed = "command" if transport == "stdio" else "url"
    if needed not in entry:
        raise problem(needed, f"missing: {_KIND[transport]} needs one")
    allowed = entry.get("allowed_tools")
    return ServerConfig(
        name=name,
        transport=transport,
        source=source,
        command=entry.get("command", ""),
        args=tuple(entry.get("args", ())),
        env=dict(entry.get("env", {})),
        cwd=entry.get("cwd"),
        url=entry.get("url", ""),
        headers=dict(entry.get("headers", {})),
        timeout=entry.get("timeout"),
        startup_timeout=entry.get("startup_timeout", STARTUP_TIMEOUT),
        allowed_tools=None if allowed is None else frozenset(allowed),
        blocked_tools=frozenset(entry.get("blocked_tools", ())),
        disabled=entry.get("disabled", False),
    )


def _transport(entry: dict[str, Any], problem: Callable[[str, str], ConfigError]) -> Transport:
    if "type" in entry:
        return TYPES[entry["type"]]
    if "command" in entry and "url" in entry:
        raise problem("url", 'beside command: set "type" to "stdio", "http" or "sse"')
    if "command" in entry:
        return "stdio"
    if "url" in entry:
        return "http"
    raise problem("command", "missing: a server needs a command (stdio) or a url (HTTP)")


_KIND: dict[Transport, str] = {
    "stdio": "a stdio server",
    "http": "a Streamable HTTP server",
    "sse": "an SSE server",
}


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _string_map(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(item, str) for item in value.values())


def _seconds(value: Any) -> bool:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return number and math.isfinite(value) and value > 0


def _url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "type": (
        lambda value: isinstance(value, str) and value in TYPES,
        f"one of {', '.join(map(repr, TYPES))}",
    ),
    "command": (_text, "a command to run (a non-empty string)"),
    "args": (_strings, "a list of strings"),
    "env": (_string_map, "an object of strings"),
    "cwd": (_text, "a directory (a non-empty string)"),
    "url": (_url, "an http:// or https:// URL"),
    "headers": (_string_map, "an object of strings"),
    "timeout": (_seconds, "a positive number of seconds"),
    "startup_timeout": (_seconds, "a positive number of seconds"),
    "allowed_tools": (_strings, "a list of tool names"),
    "blocked_tools": (_strings, "a list of tool names"),
    "disabled": (lambda value: isinstance(value, bool), "true or false"),
}
