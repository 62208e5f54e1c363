"""The store's contract, the same for both backends (the embedded one and a real Redis), then
what only one of them does: the memory store's byte budget, Redis's keys, timeouts and faults."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
import redis

from proxy.store import MemoryStore, Store, StoreUnavailable, open_store
from proxy.store.redis import RedisStore
from tests.redis_server import RedisServer, require_redis_server
from tests.servers import free_port

MakeStore = Callable[..., Store]


@pytest.fixture(params=["memory", "redis"])
async def make_store(request: pytest.FixtureRequest) -> AsyncIterator[MakeStore]:
    """`make_store(ttl=…)`: a store of the backend under test, closed at the end."""
    url = "memory" if request.param == "memory" else request.getfixturevalue("redis_url")
    made: list[Store] = []

    def make(ttl: float = 60.0) -> Store:
        made.append(open_store(url, ttl, max_bytes=1 << 20))
        return made[-1]

    yield make
    for store in made:
        await store.aclose()


def fresh(n: int = 1) -> list[str]:
    """Keys no other test (nor an earlier run on the same Redis) used."""
    run = uuid.uuid4().hex
    return [f"test:{run}:{i}" for i in range(n)]


async def test_what_is_put_is_got_back_in_order(make_store: MakeStore) -> None:
    store = make_store()
    a, b, unknown = fresh(3)
    await store.put_many([(a, b"first"), (b, b"\x00\xff binary")])
    assert await store.get_many([b, unknown, a]) == [b"\x00\xff binary", None, b"first"]
    await store.put_many([(a, b"replaced")])
    assert await store.get_many([a]) == [b"replaced"]


async def test_nothing_asked_nothing_done(make_store: MakeStore) -> None:
    store = make_store()
    await store.put_many([])
    assert await store.get_many([]) == []
    await store.ping()


async def test_many_keys_at_once(make_store: MakeStore) -> None:
    store = make_store()
    keys = fresh(2000)
    await store.put_many([(key, key.encode() * 3) for key in keys[::2]])
    values = await store.get_many(keys)
    assert values == [key.encode() * 3 if i % 2 == 0 else None for i, key in enumerate(keys)]


async def test_entries_expire_after_the_ttl(make_store: MakeStore) -> None:
    store = make_store(ttl=0.2)
    assert store.ttl == 0.2
    (key,) = fresh()
    await store.put_many([(key, b"soon gone")])
    assert await store.get_many([key]) == [b"soon gone"]
    await asyncio.sleep(0.3)
    assert await store.get_many([key]) == [None]


# The memory store's bounds.


async def test_memory_keeps_to_its_byte_budget_least_recently_used_first_out() -> None:
    store = MemoryStore(ttl=60, max_bytes=30)  # three entries of 1 + 9 bytes
    await store.put_many([("a", b"a" * 9), ("b", b"b" * 9), ("c", b"c" * 9)])
    assert store.used == 30
    assert await store.get_many(["a"]) == [b"a" * 9]  # a read is a use: "b" is now the oldest
    await store.put_many([("d", b"d" * 9)])
    assert await store.get_many(["a", "b", "c", "d"]) == [b"a" * 9, None, b"c" * 9, b"d" * 9]
    assert (store.used, len(store)) == (30, 3)
    await store.put_many([("c", b"c")])  # replacing counts the new size only
    assert (store.used, len(store)) == (22, 3)


async def test_memory_keeps_no_value_larger_than_its_whole_budget() -> None:
    store = MemoryStore(ttl=60, max_bytes=30)
    await store.put_many([("a", b"a" * 9), ("huge", b"x" * 30)])
    assert await store.get_many(["a", "huge"]) == [b"a" * 9, None]
    assert store.used == 10


async def test_memory_forgets_an_expired_entry() -> None:
    store = MemoryStore(ttl=0.05, max_bytes=100)
    await store.put_many([("a", b"a")])
    await asyncio.sleep(0.1)
    assert await store.get_many(["a"]) == [None]
    assert (store.used, len(store)) == (0, 0)


# Redis.


async def test_redis_keys_are_prefixed_and_expire_on_the_server(redis_url: str) -> None:
    store = open_store(redis_url, ttl=30.5, max_bytes=0)
    (key,) = fresh()
    await store.put_many([(key, b"value")])
    await store.aclose()
    with redis.Redis.from_url(redis_url) as raw:
        assert raw.get(key) is None
        assert raw.get("otp:" + key) == b"value"
        assert 30_000 < raw.pttl("otp:" + key) <= 30_500  # milliseconds, not whole seconds


async def test_redis_over_a_unix_socket(redis_server: RedisServer) -> None:
    store = open_store(f"unix://{redis_server.socket}", ttl=60, max_bytes=0)
    (key,) = fresh()
    await store.put_many([(key, b"local")])
    assert await store.get_many([key]) == [b"local"]
    await store.aclose()
    with redis_server.down():
        store = open_store(f"unix://{redis_server.socket}", ttl=60, max_bytes=0)
        with pytest.raises(StoreUnavailable, match=f"store at {redis_server.socket} is"):
            await store.ping()
        await store.aclose()


@pytest.mark.parametrize(
    ("url", "where"),
    [
        ("redis://", "localhost:6379"),
        ("redis://:hunter2@cache.internal/2", "cache.internal:6379"),
        ("rediss://alice:hunter2@cache.internal:6380/0", "cache.internal:6380"),
        ("unix://alice:hunter2@/run/redis/redis.sock?db=1", "/run/redis/redis.sock"),
    ],
)
async def test_a_redis_store_is_named_by_where_it_is_never_by_its_url(url: str, where: str) -> None:
    store = RedisStore(url, ttl=60)  # connects only when used
    assert store.where == where
    await store.aclose()


def each_call(store: Store) -> list[Callable[[], Awaitable[object]]]:
    return [store.ping, lambda: store.get_many(["k"]), lambda: store.put_many([("k", b"v")])]


async def test_a_redis_that_is_down_is_unavailable_at_once_named_without_its_password() -> None:
    port = free_port()  # nothing listens there
    store = open_store(f"redis://alice:hunter2@127.0.0.1:{port}/0", ttl=60, max_bytes=0)
    assert await store.get_many([]) == []  # what needs no entry needs no Redis
    await store.put_many([])
    for call in each_call(store):
        with pytest.raises(StoreUnavailable) as caught:
            await asyncio.wait_for(call(), 1)
        message = str(caught.value)
        assert f"the Redis store at 127.0.0.1:{port} is unavailable" in message
        assert "hunter2" not in message and "alice" not in message
        assert isinstance(caught.value.__cause__, redis.RedisError)  # for the logs
    await store.aclose()


async def test_a_wrong_password_is_unavailable_and_not_repeated(redis_url: str) -> None:
    store = open_store(redis_url.replace("//", "//alice:hunter2@"), ttl=60, max_bytes=0)
    with pytest.raises(StoreUnavailable) as caught:
        await store.get_many(["k"])
    assert "hunter2" not in str(caught.value)
    assert redis_url.removeprefix("redis://") in str(caught.value)
    await store.aclose()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


async def test_a_silent_redis_is_unavailable_after_the_default_timeout(silent_port: int) -> None:
    store = open_store(f"redis://127.0.0.1:{silent_port}", ttl=60, max_bytes=0)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match=f"127.0.0.1:{silent_port}"):
        await asyncio.wait_for(store.ping(), 4)
    assert time.monotonic() - started > 1.5  # the 2 s default, not an instant refusal
    await store.aclose()


async def test_a_redis_url_may_set_its_own_timeouts(silent_port: int) -> None:
    store = RedisStore(f"redis://127.0.0.1:{silent_port}?socket_timeout=0.1", ttl=60)
    with pytest.raises(StoreUnavailable):
        await asyncio.wait_for(store.get_many(["k"]), 1)
    await store.aclose()


async def test_a_redis_that_comes_back_is_used_again(redis_server: RedisServer) -> None:
    store = open_store(redis_server.url, ttl=60, max_bytes=0)
    a, b = fresh(2)
    await store.put_many([(a, b"before")])  # a pooled connection now exists
    with redis_server.down():
        for call in each_call(store):
            with pytest.raises(StoreUnavailable):
                await asyncio.wait_for(call(), 1)
    await store.ping()
    await store.put_many([(b, b"after")])
    assert await store.get_many([a, b]) == [None, b"after"]  # nothing persists a restart
    await store.aclose()


def test_without_redis_server_the_tests_skip_but_fail_under_ci(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", "")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="redis-server is not installed"):
        require_redis_server()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(BaseException, match="CI must run the Redis tests") as caught:
        require_redis_server()
    assert caught.type is pytest.fail.Exception  # not a skip
