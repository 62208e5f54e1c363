"""One client's view of the store: its entries live under a hash of its credentials, so what
one client's request stored can be recalled only by requests carrying the same key — and the
key itself is never stored."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from functools import cached_property
from typing import Any

import orjson

from proxy.auth import CREDENTIAL_HEADERS
from proxy.store.base import Store


def namespace_of(headers: Iterable[tuple[str, str]]) -> str:
    """A hash of the client's credentials (the same for every request carrying them)."""
    found: dict[str, str] = {}
    for name, value in headers:  # the first of each, as the client-key check reads it
        found.setdefault(name.lower(), value)
    credential = next((found[name] for name in CREDENTIAL_HEADERS if name in found), "")
    return hashlib.sha256(credential.encode()).hexdigest()[:32]


class Scoped:
    """JSON values under `kind:id` keys, in the namespace of the client whose request has
    `headers` — hashed only if the request uses the store (most never do)."""

    def __init__(self, store: Store, headers: Iterable[tuple[str, str]]) -> None:
        self.store = store
        self._headers = headers

    @cached_property
    def prefix(self) -> str:
        return namespace_of(self._headers) + ":"

    async def get(self, keys: Sequence[str]) -> list[Any]:
        """The values of `keys`, in order; None where nothing (or nothing alive) is kept."""
        if not keys:
            return []
        raw = await self.store.get_many([self.prefix + key for key in keys])
        return [None if value is None else orjson.loads(value) for value in raw]

    async def put(self, items: Sequence[tuple[str, Any]]) -> None:
        if items:
            await self.store.put_many([(self.prefix + k, orjson.dumps(v)) for k, v in items])
