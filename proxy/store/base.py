"""What the proxy keeps between requests, wherever it is kept: bytes under keys, each
expiring after the store's time to live."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class StoreUnavailable(Exception):
    """The store cannot be reached: a request that needs it fails (503) rather than going
    upstream with a broken history."""


class Store(Protocol):
    """A key-value store with expiry. Every method may raise `StoreUnavailable`."""

    ttl: float  # seconds an entry lives after it was put

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """The values of `keys`, in order; None for a key unknown or expired."""

    async def put_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Keep each value under its key, for `ttl` seconds."""

    async def ping(self) -> None:
        """Return if the store is reachable; raise `StoreUnavailable` if not."""

    async def aclose(self) -> None:
        """Release connections."""
