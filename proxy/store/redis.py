"""The shared store: a Redis server (`redis://…`, `rediss://…`, `unix://…`), so several replicas
or workers see one conversation state and it survives a proxy's restart.

Every key gets the prefix `otp:`, so a Redis shared with other applications is safe; entries
expire on the server (`SET … PX`). Reads and writes are bounded by `timeout` seconds (connect and
socket, unless the URL's own `socket_timeout`/`socket_connect_timeout` say otherwise): a Redis
that is down or silent becomes `StoreUnavailable` quickly, never a hung request. There is no retry
of our own: a failed connection is dropped, and the next call connects again, so a Redis that
comes back is used without a restart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from redis.asyncio import Redis
from redis.exceptions import RedisError

from proxy.store.base import StoreUnavailable

PREFIX = "otp:"


class RedisStore:
    def __init__(self, url: str, ttl: float, timeout: float = 2.0) -> None:
        self.ttl = ttl
        self._ttl_ms = max(1, round(ttl * 1000))
        self._redis: Redis = Redis.from_url(
            url, socket_connect_timeout=timeout, socket_timeout=timeout
        )
        options = self._redis.connection_pool.connection_kwargs
        # Where it is, for messages (redis-py's defaults when the URL names no host or port):
        # never the URL itself, which may hold a password.
        where = f"{options.get('host', 'localhost')}:{options.get('port', 6379)}"
        self.where: str = options.get("path", where)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:  # redis-py would still send an MGET: a request with no ids needs no Redis
            return []
        try:
            values = await self._redis.mget([PREFIX + key for key in keys])
        except RedisError as exc:
            raise self._unavailable(exc) from exc
        return cast("list[bytes | None]", values)  # bytes: responses are not decoded

    async def put_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        """All of them kept, or none: one `SET` (the usual case: one entry per request), or
        several in MULTI/EXEC — which costs redis-py several times the CPU of one `SET`."""
        try:
            if len(items) == 1:
                ((key, value),) = items
                await self._redis.set(PREFIX + key, value, px=self._ttl_ms)
                return
            pipe = self._redis.pipeline()  # none sent if empty
            for key, value in items:
                pipe.set(PREFIX + key, value, px=self._ttl_ms)
            await pipe.execute()
        except RedisError as exc:
            raise self._unavailable(exc) from exc

    async def ping(self) -> None:
        try:
            await self._redis.ping()
        except RedisError as exc:
            raise self._unavailable(exc) from exc

    async def aclose(self) -> None:
        await self._redis.aclose()

    def _unavailable(self, exc: RedisError) -> StoreUnavailable:
        """Named by host:port (or socket path), never by the URL, which may hold a password
        (redis-py's own messages carry neither)."""
        return StoreUnavailable(f"the Redis store at {self.where} is unavailable: {exc}")
