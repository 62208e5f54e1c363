"""The request id: the client's `X-Request-ID` when it is a sane one, else a new one."""

from __future__ import annotations

import random
import re

HEADER = b"x-request-id"
MAX_LENGTH = 128
# Printable ASCII without spaces: safe in a log line, a header and a trace attribute.
_SANE = re.compile(rb"[\x21-\x7e]{1,%d}" % MAX_LENGTH)


def accepted(value: bytes | None) -> str:
    """`value` when it is printable and at most `MAX_LENGTH` bytes; otherwise (or without
    one) a new id: 128 random bits in hex, as a uuid4's. An id needs to be unique, not secret:
    Python's generator, seeded from the system's at start, is asked no system call per request."""
    if value is not None and _SANE.fullmatch(value):
        return value.decode("ascii")
    return f"{random.getrandbits(128):032x}"
