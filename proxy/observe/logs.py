"""Log lines: readable `key=value` text by default, or one JSON object a line; and the one
line each request ends with (logger `proxy.access`, at info).

Nothing here reads a header other than the request id: no key or `Authorization` value can
reach a line through it.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from proxy.observe.record import Record

access = logging.getLogger("proxy.access")

# A record's own attributes, and uvicorn's colored copy of its message: not fields.
_RESERVED = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "color_message",
}


def configure(level: str, style: str) -> None:
    """Every logger (uvicorn's too) writes to stderr at `level`, as `style` (text, json)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if style == "json" else TextFormatter())
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


def request_line(record: Record) -> None:
    """The request's line, once its response is over."""
    if not access.isEnabledFor(logging.INFO):
        return
    client = record.scope.get("client")
    fields: dict[str, Any] = {
        "request_id": record.id,
        "method": record.scope.get("method"),
        "route": record.route,
        "path": record.scope.get("raw_path", b"").decode("latin-1"),
        "status": record.status,
        "rounds": record.rounds,
        "tools": [
            {"name": use.name, "outcome": use.outcome, "ms": round(use.seconds * 1000, 3)}
            for use in record.tools
        ],
        "tokens_in": record.tokens[0] if record.tokens else None,
        "tokens_out": record.tokens[1] if record.tokens else None,
        "overhead_ms": round(record.watch.total * 1000, 3) if record.watch else None,
        "duration_ms": round((time.perf_counter() - record.started) * 1000, 3),
        "client": f"{client[0]}:{client[1]}" if client else None,
    }
    if record.upstream_id is not None:
        fields["upstream_request_id"] = record.upstream_id
    access.info("request", extra=fields)


def _fields(entry: logging.LogRecord) -> dict[str, Any]:
    """What a line carries beyond its message: the `extra` it was logged with."""
    return {key: value for key, value in entry.__dict__.items() if key not in _RESERVED}


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        pairs = " ".join(f"{key}={_text(key, value)}" for key, value in _fields(record).items())
        if not pairs:
            return text
        head, newline, rest = text.partition("\n")  # a traceback stays after the fields
        return f"{head} {pairs}{newline}{rest}"


def _text(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key == "tools":  # the request line's calls: name:outcome:ms, …
        return ",".join(f"{v['name']}:{v['outcome']}:{v['ms']}ms" for v in value) or "-"
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if isinstance(value, str | int | float | bool):
        text = str(value)
    if not text or any(c in text for c in ' "=\\') or not text.isprintable():
        return json.dumps(text)
    return text
