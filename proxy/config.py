"""Settings, layered: defaults < TOML config file < environment (`TOOL_PROXY_*`) < CLI flags."""

from __future__ import annotations

import math
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
    show_calls: bool = False

    def __post_init__(self) -> None:
        for name in ("upstream", "port", "max_rounds", "tool_timeout"):
            problem = _problem(name, getattr(self, name))
            if problem:
                raise ConfigError(f"{name} {problem}")


def _problem(name: str, value: Any) -> str | None:
    """What is wrong with a well-typed value, or None."""
    if name == "upstream":
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return f"must be an http(s) URL including /v1, got {value!r}"
    elif name == "port" and not 0 <= value <= 65535:
        return f"must be 0-65535, got {value}"
    elif name == "max_rounds" and value < 2:
        return f"must be at least 2 (a round that calls tools, then one that answers), got {value}"
    elif name == "tool_timeout" and not (math.isfinite(value) and value > 0):
        return f"must be a positive number of seconds, got {value}"
    return None


_NAMES = [f.name for f in fields(Settings)]
_BOOLEANS = {"true": True, "1": True, "yes": True, "on": True,
             "false": False, "0": False, "no": False, "off": False}  # fmt: skip
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
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text: {exc.reason}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    unknown = sorted(set(data) - set(_NAMES))
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown setting(s) {', '.join(unknown)}; "
            f"known: {', '.join(_NAMES)}"
        )
    return {name: _coerce(name, value, f"config file {path}") for name, value in data.items()}


def _coerce(name: str, value: Any, where: str) -> Any:
    coerced = _typed(name, value, where)
    problem = _problem(name, coerced)
    if problem:
        raise ConfigError(f"{name} (from {where}) {problem}")
    return coerced


def _typed(name: str, value: Any, where: str) -> Any:
    try:
        if name in ("port", "max_rounds"):
            if isinstance(value, bool) or not isinstance(value, int | str):
                raise ValueError
            return int(value)
        if name == "tool_timeout":
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise ValueError
            return float(value)
        if name == "show_calls":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in _BOOLEANS:
                return _BOOLEANS[value.strip().lower()]
            raise ValueError
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
            "show_calls": "true or false",
        }.get(name, "a string")
        raise ConfigError(f"{name} (from {where}) must be {kind}, got {value!r}") from None
