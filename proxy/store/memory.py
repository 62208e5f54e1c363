"""The embedded store (the default): one process's memory, bounded in bytes and in time.

Entries expire `ttl` seconds after they were put; beyond `max_bytes`, the least recently used
go first (a read counts as a use), and a value larger than the whole budget is not kept at all
rather than evicting everything else. It does not survive a restart or span processes: several
replicas or `--workers` need the Redis store.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence


class MemoryStore:
    def __init__(self, ttl: float, max_bytes: int) -> None:
        self.ttl = ttl
        self.max_bytes = max_bytes
        self.used = 0
        self._items: OrderedDict[str, tuple[bytes, float]] = OrderedDict()  # value, expiry

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return [self._get(key) for key in keys]

    async def put_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        for key, value in items:
            self._put(key, value)

    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        self._items.clear()
        self.used = 0

    def __len__(self) -> int:
        return len(self._items)

    def _get(self, key: str) -> bytes | None:
        entry = self._items.get(key)
        if entry is None:
            return None
        if entry[1] <= time.monotonic():
            self._drop(key)
            return None
        self._items.move_to_end(key)
        return entry[0]

    def _put(self, key: str, value: bytes) -> None:
        if key in self._items:
            self._drop(key)
        size = len(key) + len(value)
        if size > self.max_bytes:
            return
        now = time.monotonic()
        self._items[key] = (value, now + self.ttl)
        self.used += size
        while self.used > self.max_bytes:
            self._drop(next(iter(self._items)))

    def _drop(self, key: str) -> None:
        value, _ = self._items.pop(key)
        self.used -= len(key) + len(value)
