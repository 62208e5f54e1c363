"""The request id: the client's `X-Request-ID` when it is a sane one, else a new one."""

from __future__ import annotations

import re
import uuid

HEADER = b"x-request-id"
MAX_LENGTH = 128
# Printable ASCII without spaces: safe in a log line, a header and a trace attribute.
_SANE = re.compile(rb"[\x21-\x7e]{1,%d}" % MAX_LENGTH)


def accepted(value: bytes | None) -> str:
    """`value` when it is printable and at most `MAX_LENGTH` bytes; otherwise (or without
    one) a new id, a uuid4 in hex."""
    if value is not None and _SANE.fullmatch(value):
        return value.decode("ascii")
    return uuid.uuid4().hex
