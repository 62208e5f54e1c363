"""Settings, layered: defaults < TOML config file < environment (`TOOL_PROXY_*`) < CLI flags.

Every setting is declared once, in `SPECS`: its kind, its default and what it means. The
TOML keys, the environment variables, the `serve` flags and `--help` all come from there.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


class ConfigError(ValueError):
    """A setting is missing, unknown or malformed; the message names it and where it came from."""


@dataclass(frozen=True)
class Client:
    """A client key of the config file (`[clients.NAME]`): the name it is known by, the
    Bearer token it presents, and the server tools it may use (None: every one)."""

    name: str
    key: str = field(repr=False)  # never in a log line or a traceback
    tools: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Settings:
    upstream: str = "https://api.openai.com/v1"
    host: str = "127.0.0.1"
    port: int = 8080
    upstream_api_key: str | None = None
    api_keys: tuple[str, ...] | None = None
    clients: tuple[Client, ...] = ()
    plugins: tuple[str, ...] | None = None
    # Each plugin's own settings; kept out of reprs, as they may hold a plugin's secrets.
    plugin_config: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, repr=False)
    max_rounds: int = 8
    tool_timeout: float = 30.0
    show_calls: bool = False
    connect_timeout: float = 10.0
    read_timeout: float = 600.0
    max_body_mb: float = 50.0
    max_header_kb: int = 64
    max_tool_result_kb: int = 100
    tool_concurrency: int = 8
    tool_concurrency_total: int = 64
    tool_threads: int = 32
    keepalive_interval: float = 15.0
    drain_timeout: float = 20.0
    store: str = "memory"
    store_ttl: float = 86400.0
    store_max_mb: float = 64.0
    workers: int = 1
    log_level: str = "info"
    log_format: str = "text"

    def __post_init__(self) -> None:
        for spec in SPECS.values():
            value = getattr(self, spec.name)
            problem = None if value is None else spec.problem(value)
            if problem:
                raise ConfigError(f"{spec.name} {problem}")
        if self.workers > 1 and self.store == "memory":
            raise ConfigError(
                f"workers is {self.workers} but store is 'memory': each worker process would "
                "keep its own conversation state, and a follow-up landing on another worker "
                "would lose it. Set TOOL_PROXY_STORE to a redis:// URL shared by the workers, "
                "or run one worker."
            )
        shared = [c.name for c in self.clients if c.key in (self.api_keys or ())]
        if shared:
            raise ConfigError(
                f"client {shared[0]!r} has a key that is also in api_keys "
                "($TOOL_PROXY_API_KEYS): a key names one client; remove it from one of them"
            )
        if (self.api_keys or self.clients) and not self.upstream_api_key:
            which = "api_keys ($TOOL_PROXY_API_KEYS)" if self.api_keys else "clients (config file)"
            raise ConfigError(
                f"{which} is set but upstream_api_key "
                "($TOOL_PROXY_UPSTREAM_API_KEY) is not: the proxy would have no key for the "
                "upstream, and it never sends its clients' keys there. Set "
                "TOOL_PROXY_UPSTREAM_API_KEY to the upstream's key (any value, e.g. 'none', for "
                "an upstream that needs no key, such as a local Ollama or vLLM)."
            )

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)

    @property
    def max_header_bytes(self) -> int:
        return self.max_header_kb * 1024

    @property
    def store_max_bytes(self) -> int:
        return int(self.store_max_mb * 1024 * 1024)

    @property
    def max_tool_result_bytes(self) -> int:
        return self.max_tool_result_kb * 1024


@dataclass(frozen=True)
class Spec:
    """One setting: how to read it, what bounds it, and what `--help` says of it."""

    name: str
    kind: str  # "str", "int", "float", "bool", "list", "clients", "plugin_config"
    help: str
    flag: bool = True  # secrets are kept off the command line (and out of `ps`)
    file_only: bool = False  # tables, read from the TOML file only
    minimum: float | None = None  # inclusive
    positive: bool = False
    why: str = ""  # the reason for `minimum`
    choices: tuple[str, ...] = ()

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def default(self) -> Any:
        return getattr(Settings(), self.name)

    def problem(self, value: Any) -> str | None:
        """What is wrong with a well-typed value, or None."""
        if self.name == "upstream":
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                return f"must be an http(s) URL including /v1, got {value!r}"
        if self.choices and value not in self.choices:
            return f"must be one of {', '.join(self.choices)}, got {value!r}"
        scheme = urlsplit(value).scheme if self.name == "store" else ""
        if self.name == "store" and value != "memory" and scheme not in ("redis", "rediss", "unix"):
            # Named by its scheme only: the whole URL may hold a password.
            return f"must be 'memory' or a redis://, rediss:// or unix:// URL, got {scheme!r}"
        if self.kind in ("int", "float"):
            if not math.isfinite(value):
                return f"must be a finite number, got {value}"
            if self.positive and value <= 0:
                unit = " of seconds" if "seconds" in self.help else ""
                return f"must be a positive number{unit}, got {value}"
            if self.minimum is not None and value < self.minimum:
                why = f" ({self.why})" if self.why else ""
                return f"must be at least {self.minimum:g}{why}, got {value}"
        if self.name == "port" and not 0 <= value <= 65535:
            return f"must be 0-65535, got {value}"
        if self.kind == "clients":
            return _shared_key(value)
        return None


ENV_PREFIX = "TOOL_PROXY_"

SPECS: dict[str, Spec] = {
    spec.name: spec
    for spec in [
        Spec("upstream", "str", "base URL of the upstream API, including /v1"),
        Spec("host", "str", "address to listen on"),
        Spec("port", "int", "port to listen on"),
        Spec(
            "upstream_api_key",
            "str",
            "key the proxy sends upstream; unset = forward the client's Authorization",
            flag=False,
        ),
        Spec(
            "api_keys",
            "list",
            "comma-separated keys clients must present (Bearer); needs upstream_api_key",
            flag=False,
        ),
        Spec(
            "clients",
            "clients",
            "config file only: [clients.NAME] tables, each a client key (key = the Bearer "
            "token) and the server tools it may use (tools = [...]; unset = every tool); "
            "needs upstream_api_key",
            flag=False,
            file_only=True,
        ),
        Spec("plugins", "list", "comma-separated entry-point names to load; unset = all"),
        Spec(
            "plugin_config",
            "plugin_config",
            "config file only: [plugin_config.NAME] tables, each the configuration a tool "
            "provider plugin (entry point NAME) is started with",
            flag=False,
            file_only=True,
        ),
        Spec(
            "max_rounds",
            "int",
            "most upstream rounds in one request",
            minimum=2,
            why="a round that calls tools, then one that answers",
        ),
        Spec("tool_timeout", "float", "seconds one tool call may run", positive=True),
        Spec("show_calls", "bool", "Responses API: show the proxy's calls as mcp_call items"),
        Spec("connect_timeout", "float", "seconds to connect to the upstream", positive=True),
        Spec(
            "read_timeout",
            "float",
            "seconds the upstream may send nothing, before its first byte or between two",
            positive=True,
        ),
        Spec("max_body_mb", "float", "largest request body, in MiB (413 beyond)", positive=True),
        Spec(
            "max_header_kb",
            "int",
            "largest request line and headers, in KiB (431 beyond)",
            positive=True,
        ),
        Spec(
            "max_tool_result_kb",
            "int",
            "largest tool result sent upstream, in KiB (longer ones are cut, with a note)",
            positive=True,
        ),
        Spec("tool_concurrency", "int", "tool calls run at once per request", minimum=1),
        Spec("tool_concurrency_total", "int", "tool calls run at once in the process", minimum=1),
        Spec("tool_threads", "int", "worker threads for sync tools", minimum=1),
        Spec(
            "keepalive_interval",
            "float",
            "seconds of silence after which a stream gets an SSE comment (0 = never)",
            minimum=0,
        ),
        Spec(
            "drain_timeout",
            "float",
            "seconds in-flight requests get to finish on shutdown (SIGTERM)",
            minimum=0,
        ),
        Spec(
            "store",
            "str",
            "where conversation state is kept: memory (one process) or a redis:// URL "
            "(shared by replicas)",
            flag=False,  # a Redis URL may hold a password
        ),
        Spec("store_ttl", "float", "seconds conversation state is kept", positive=True),
        Spec(
            "store_max_mb",
            "float",
            "most MiB of conversation state the memory store keeps (least recently used first out)",
            positive=True,
        ),
        Spec(
            "workers",
            "int",
            "processes serving on the port (more than 1 needs a redis:// store)",
            minimum=1,
        ),
        Spec(
            "log_level",
            "str",
            "least severe log level printed",
            choices=("critical", "error", "warning", "info", "debug"),
        ),
        Spec("log_format", "str", "log lines as readable text or JSON", choices=("text", "json")),
    ]
}
assert list(SPECS) == [f.name for f in fields(Settings)]

_BOOLEANS = {"true": True, "1": True, "yes": True, "on": True,
             "false": False, "0": False, "no": False, "off": False}  # fmt: skip
_KINDS = {
    "int": "an integer",
    "float": "a number",
    "list": "a comma-separated list",
    "bool": "true or false",
    "str": "a string",
    "clients": "tables: [clients.NAME] with key and, optionally, tools",
    "plugin_config": "tables: [plugin_config.NAME], each the settings of plugin NAME",
}


def load_settings(
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    config_file: str | os.PathLike[str] | None = None,
) -> Settings:
    """Build the settings from every layer; a flag or variable left unset defers to the next."""
    environ = os.environ if environ is None else environ
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    path = config_file or environ.get(ENV_PREFIX + "CONFIG")
    values: dict[str, Any] = {}
    if path:
        values.update(_from_file(Path(path)))
    for spec in SPECS.values():
        raw = None if spec.file_only else environ.get(spec.env)
        if raw not in (None, ""):
            values[spec.name] = _coerce(spec, raw, f"${spec.env}")
    for name, value in flags.items():
        values[name] = _coerce(SPECS[name], value, SPECS[name].option)
    return replace(Settings(), **values)


def _from_file(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text: {exc.reason}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    unknown = sorted(set(data) - set(SPECS))
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown setting(s) {', '.join(unknown)}; "
            f"known: {', '.join(SPECS)}"
        )
    return {
        name: _coerce(SPECS[name], value, f"config file {path}") for name, value in data.items()
    }


def _coerce(spec: Spec, value: Any, where: str) -> Any:
    coerced = _typed(spec, value, where)
    problem = spec.problem(coerced)
    if problem:
        raise ConfigError(f"{spec.name} (from {where}) {problem}")
    return coerced


def _typed(spec: Spec, value: Any, where: str) -> Any:
    if spec.kind == "clients":
        return _clients(value, where)
    if spec.kind == "plugin_config":
        return _plugin_config(value, where)
    try:
        if spec.kind == "int":
            if isinstance(value, bool) or not isinstance(value, int | str):
                raise ValueError
            return int(value)
        if spec.kind == "float":
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise ValueError
            return float(value)
        if spec.kind == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in _BOOLEANS:
                return _BOOLEANS[value.strip().lower()]
            raise ValueError
        if spec.kind == "list":
            items = value.split(",") if isinstance(value, str) else value
            if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
                raise ValueError
            return tuple(i.strip() for i in items if i.strip())
        if not isinstance(value, str):
            raise ValueError
        return value
    except ValueError:
        raise ConfigError(
            f"{spec.name} (from {where}) must be {_KINDS[spec.kind]}, got {value!r}"
        ) from None


def _clients(value: Any, where: str) -> tuple[Client, ...]:
    """The `[clients.NAME]` tables, each checked: a table with a key and maybe a tool list."""
    if not isinstance(value, dict):
        raise ConfigError(f"clients (from {where}) must be {_KINDS['clients']}")
    found = []
    for name, table in value.items():
        what = f"clients.{name} (from {where})"
        if not isinstance(table, dict):
            raise ConfigError(f'{what} must be a table: [clients.{name}] with key = "..."')
        unknown = sorted(set(table) - {"key", "tools"})
        if unknown:
            raise ConfigError(f"{what}: unknown field(s) {', '.join(unknown)}; known: key, tools")
        key = table.get("key")
        if not isinstance(key, str) or not key.strip():
            raise ConfigError(f"{what} needs a key: the Bearer token this client presents")
        tools = table.get("tools")
        if tools is not None:
            if not isinstance(tools, list) or not all(isinstance(t, str) for t in tools):
                raise ConfigError(f"{what}: tools must be a list of tool names")
            tools = tuple(t.strip() for t in tools if t.strip())
        found.append(Client(name, key.strip(), tools))
    return tuple(found)


def _plugin_config(value: Any, where: str) -> dict[str, dict[str, Any]]:
    """The `[plugin_config.NAME]` tables, kept as they are: what each holds is its plugin's
    to check, when it starts."""
    if not isinstance(value, dict):
        raise ConfigError(f"plugin_config (from {where}) must be {_KINDS['plugin_config']}")
    for name, table in value.items():
        if not isinstance(table, dict):
            raise ConfigError(
                f"plugin_config.{name} (from {where}) must be a table: [plugin_config.{name}]"
            )
    return value


def _shared_key(clients: tuple[Client, ...]) -> str | None:
    """Two clients with one key: which of them a request comes from could not be told."""
    first: dict[str, str] = {}
    for client in clients:
        other = first.setdefault(client.key, client.name)
        if other != client.name:
            return f"{other!r} and {client.name!r} have the same key: each needs its own"
    return None


def warnings_for(settings: Settings) -> list[str]:
    """Settings that are valid but probably not what was meant, to say once at start."""
    found = []
    path = urlsplit(settings.upstream).path.rstrip("/")
    if not path:
        found.append(
            f"upstream {settings.upstream} has no path: OpenAI-compatible APIs are served under "
            f"a versioned base such as {settings.upstream.rstrip('/')}/v1, and every request "
            "would go to the upstream's root instead"
        )
    if not settings.api_keys and not settings.clients and not _loopback(settings.host):
        found.append(
            f"listening on {settings.host}, beyond this machine, without client keys: anyone "
            "who reaches the port can use the upstream (set TOOL_PROXY_API_KEYS)"
        )
    return found


def _loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")
