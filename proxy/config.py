"""Settings, layered: defaults < TOML config file < environment (`TOOL_PROXY_*`) < CLI flags."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


class ConfigError(ValueError):
    """A setting is missing, unknown or malformed; the message names it and where it came from."""


@dataclass(frozen=True)
class Settings:
    upstream: str = "https://api.openai.com/v1"
    host: str = "127.0.0.1"
    port: int = 8080
    upstream_api_key: str | None = None
    api_keys: tuple[str, ...] | None = None
    plugins: tuple[str, ...] | None = None
    max_rounds: int = 8
    tool_timeout: float = 30.0

    def __post_init__(self) -> None:
        parts = urlsplit(self.upstream)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"upstream must be an http(s) URL, got {self.upstream!r}")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be 0-65535, got {self.port}")
        if self.max_rounds < 1:
            raise ConfigError(f"max_rounds must be at least 1, got {self.max_rounds}")
        if self.tool_timeout <= 0:
            raise ConfigError(f"tool_timeout must be positive, got {self.tool_timeout}")


_NAMES = [f.name for f in fields(Settings)]
ENV_PREFIX = "TOOL_PROXY_"


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
    for name in _NAMES:
        raw = environ.get(ENV_PREFIX + name.upper())
        if raw not in (None, ""):
            values[name] = _coerce(name, raw, f"${ENV_PREFIX}{name.upper()}")
    for name, value in flags.items():
        values[name] = _coerce(name, value, f"--{name.replace('_', '-')}")
    return replace(Settings(), **values)


def _from_file(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    unknown = sorted(set(data) - set(_NAMES))
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown setting(s) {', '.join(unknown)}; "
            f"known: {', '.join(_NAMES)}"
        )
    return {name: _coerce(name, value, f"{path}: {name}") for name, value in data.items()}


def _coerce(name: str, value: Any, where: str) -> Any:
    try:
        if name in ("port", "max_rounds"):
            if isinstance(value, bool) or not isinstance(value, int | str):
                raise ValueError
            return int(value)
        if name == "tool_timeout":
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise ValueError
            return float(value)
        if name in ("api_keys", "plugins"):
            items = value.split(",") if isinstance(value, str) else value
            if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
                raise ValueError
            return tuple(i.strip() for i in items if i.strip())
        if not isinstance(value, str):
            raise ValueError
        return value
    except ValueError:
        kind = {
            "port": "an integer",
            "max_rounds": "an integer",
            "tool_timeout": "a number of seconds",
            "api_keys": "a comma-separated list",
            "plugins": "a comma-separated list",
        }.get(name, "a string")
        raise ConfigError(f"{where} must be {kind}, got {value!r}") from None
