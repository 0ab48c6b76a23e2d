"""The ``Cache`` contract, run against the memory and the Redis implementation, bare and encrypted."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from redis.asyncio import Redis

from mcplane.backends import Cache, EncryptedCache, ManualClock, MemoryCache
from mcplane.backends.redis import RedisCache
from mcplane.errors import ConfigError

from .harness import Harness, RedisTime, memory_advance

KEY = Fernet.generate_key()


@pytest.fixture(params=["memory", "redis", "cluster", "memory+fernet", "redis+fernet"])
def backend(request: pytest.FixtureRequest, clock: ManualClock, prefix: str) -> Harness:
    kind, _, encryption = str(request.param).partition("+")
    if kind == "memory":
        harness = Harness(MemoryCache(clock=clock), memory_advance(clock), kind)
    else:
        client: Redis = request.getfixturevalue("redis_client" if kind == "redis" else "cluster_client")
        harness = Harness(RedisCache(client, prefix=prefix), RedisTime(client, prefix), kind)
    if encryption:
        harness.impl = EncryptedCache(harness.impl, [KEY])
    return harness


def cache(backend: Harness) -> Cache:
    assert isinstance(backend.impl, MemoryCache | RedisCache | EncryptedCache)
    return backend.impl


async def test_missing_key_is_a_counted_miss(backend: Harness) -> None:
    c = cache(backend)
    assert await c.get("absent") is None
    assert (c.stats.hits, c.stats.misses) == (0, 1)


async def test_set_then_get_round_trips_bytes(backend: Harness) -> None:
    c = cache(backend)
    value = bytes(range(256)) * 4  # every byte value, NULs included
    await c.set("k", value, 30)
    assert await c.get("k") == value
    assert (c.stats.hits, c.stats.misses, c.stats.sets) == (1, 0, 1)


async def test_entries_expire_after_their_ttl(backend: Harness) -> None:
    c = cache(backend)
    await c.set("short", b"1", 10)
    await c.set("long", b"2", 100)
    await backend.advance(9.5)
    assert await c.get("short") == b"1"
    await backend.advance(1.0)
    assert await c.get("short") is None
    assert await c.get("long") == b"2"


async def test_set_replaces_value_and_ttl(backend: Harness) -> None:
    c = cache(backend)
    await c.set("k", b"old", 5)
    await c.set("k", b"new", 60)
    await backend.advance(10)
    assert await c.get("k") == b"new"


async def test_delete_removes_and_tolerates_absent_keys(backend: Harness) -> None:
    c = cache(backend)
    await c.set("k", b"v", 30)
    await c.delete("k")
    await c.delete("never-set")
    assert await c.get("k") is None


async def test_ttl_must_be_positive(backend: Harness) -> None:
    c = cache(backend)
    for ttl in (0, -1):
        with pytest.raises(ValueError, match="positive"):
            await c.set("k", b"v", ttl)


async def test_encryption_stores_ciphertext_and_rotation_keeps_old_entries(backend: Harness) -> None:
    inner = cache(backend)
    if isinstance(inner, EncryptedCache):
        inner = inner.inner
    old_key, new_key = Fernet.generate_key(), Fernet.generate_key()
    await EncryptedCache(inner, [old_key]).set("k", b"secret result", 60)
    stored = await inner.get("k")
    assert stored is not None
    assert b"secret result" not in stored
    rotated = EncryptedCache(inner, [new_key, old_key])
    assert await rotated.get("k") == b"secret result"
    await rotated.set("k2", b"fresh", 60)
    assert await EncryptedCache(inner, [new_key]).get("k2") == b"fresh"
    # once the old key is retired, its entries read as misses (counted as errors) and are dropped
    retired = EncryptedCache(inner, [new_key])
    assert await retired.get("k") is None
    assert (retired.stats.errors, retired.stats.misses) == (1, 1)
    assert await inner.get("k") is None


def test_encryption_rejects_bad_keys_without_echoing_them() -> None:
    with pytest.raises(ConfigError, match="#2 is not a valid Fernet key") as info:
        EncryptedCache(MemoryCache(), [Fernet.generate_key(), "hunter2-not-a-key"])
    assert "hunter2" not in str(info.value)
    with pytest.raises(ConfigError, match="list of Fernet keys"):
        EncryptedCache(MemoryCache(), Fernet.generate_key().decode())


async def test_memory_cache_is_a_bounded_lru(clock: ManualClock) -> None:
    c = MemoryCache(max_entries=2, clock=clock)
    await c.set("a", b"1", 60)
    await c.set("b", b"2", 60)
    assert await c.get("a") == b"1"  # "a" is now the most recently used
    await c.set("c", b"3", 60)
    assert await c.get("b") is None
    assert await c.get("a") == b"1"
    assert await c.get("c") == b"3"
    assert len(c) == 2
    assert c.stats.snapshot() == {"hits": 3, "misses": 1, "sets": 3, "evictions": 1, "errors": 0}
