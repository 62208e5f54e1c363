"""What a tool's return value becomes for the model: a `str` as is, anything else JSON (the
usual rich types in their usual JSON spelling), and never more than a bound in size."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import json
import uuid
from typing import Any


class NotJSON(ValueError):
    """The value cannot be encoded as JSON; the message says what could not."""


def as_text(value: Any) -> str:
    """`value` as the text of a tool result; `NotJSON` when it has no JSON form."""
    if isinstance(value, str):
        return value
    try:  # not orjson: it refuses integers beyond 64 bits, which exact arithmetic returns
        return json.dumps(value, ensure_ascii=False, default=_plain)
    except Exception as exc:  # whatever a model_dump() raised, too
        raise NotJSON(str(exc) or type(exc).__name__) from exc


def _plain(value: Any) -> Any:
    """A JSON-encodable stand-in for a value the encoder does not know."""
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID | decimal.Decimal):
        return str(value)  # a Decimal as a string keeps every digit, as pydantic does
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, set | frozenset):
        try:
            return sorted(value)
        except TypeError:  # mixed types have no order
            return list(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}
    dump = getattr(value, "model_dump", None)
    if callable(dump):  # pydantic models, and anything shaped like one
        return dump()
    raise TypeError(f"an object of type {type(value).__qualname__} is not JSON-encodable")


def truncated(text: str, limit: int) -> tuple[str, int] | None:
    """`text` cut to at most `limit` UTF-8 bytes, at a character boundary, with a note the
    model can read, and the size it had; None when it fits."""
    if len(text) <= limit // 4:  # no character takes more than 4 bytes
        return None
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= limit:
        return None
    cut = limit
    while cut and data[cut] & 0xC0 == 0x80:  # a continuation byte: its character began earlier
        cut -= 1
    note = (
        f"\n\n[truncated by openai-tool-proxy: the tool returned {len(data)} bytes; "
        f"only the first {cut} are shown]"
    )
    return data[:cut].decode("utf-8", "surrogatepass") + note, len(data)
