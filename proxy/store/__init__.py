"""Where the proxy keeps conversation state between requests (`TOOL_PROXY_STORE`): `memory`,
embedded in one process, or a Redis server (`redis://…`, `rediss://…`, `unix://…`) shared by
several replicas or workers."""

from __future__ import annotations

from proxy.store.base import Store, StoreUnavailable
from proxy.store.memory import MemoryStore

__all__ = ["MemoryStore", "Store", "StoreUnavailable", "open_store"]


def open_store(url: str, ttl: float, max_bytes: int) -> Store:
    """The store a `TOOL_PROXY_STORE` value names (checked by the settings already)."""
    if url == "memory":
        return MemoryStore(ttl, max_bytes)
    from proxy.store.redis import RedisStore

    return RedisStore(url, ttl)
