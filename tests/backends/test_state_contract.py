"""The ``StateStore`` contract, run against the memory store, Redis, and a Redis Cluster.

The Cluster run starts three private ``redis-server`` nodes once per test session; it proves
the verbs (Lua scripts included) work where keys are spread over slots.
"""

from __future__ import annotations

import anyio
import pytest
from redis.asyncio import Redis

from mcplane.backends import ManualClock
from mcplane.backends.state import MemoryStateStore, RedisStateStore, State, StateSpace, StateStore
from mcplane.errors import InvalidArguments

from .harness import Harness, RedisTime, memory_advance


@pytest.fixture(params=["memory", "redis", "cluster"])
def backend(request: pytest.FixtureRequest, clock: ManualClock, prefix: str) -> Harness:
    if request.param == "memory":
        return Harness(MemoryStateStore(clock=clock), memory_advance(clock), "memory")
    client: Redis = request.getfixturevalue("redis_client" if request.param == "redis" else "cluster_client")
    return Harness(RedisStateStore(client, prefix=prefix), RedisTime(client, prefix), str(request.param))


def store(backend: Harness) -> StateStore:
    assert isinstance(backend.impl, MemoryStateStore | RedisStateStore)
    return backend.impl


K = "{t}:k"


async def test_a_missing_key_reads_none(backend: Harness) -> None:
    assert await store(backend).get("{t}:absent") is None


async def test_set_then_get_round_trips_and_replaces(backend: Harness) -> None:
    s = store(backend)
    assert await s.set(K, b'{"a":1}', 30) is True
    assert await s.get(K) == b'{"a":1}'
    assert await s.set(K, b"2", 30) is True
    assert await s.get(K) == b"2"


async def test_if_absent_writes_only_once(backend: Harness) -> None:
    s = store(backend)
    assert await s.set(K, b"first", 10, if_absent=True) is True
    assert await s.set(K, b"second", 10, if_absent=True) is False
    assert await s.get(K) == b"first"
    await backend.advance(11)  # expired: absent again
    assert await s.set(K, b"third", 10, if_absent=True) is True
    assert await s.get(K) == b"third"


async def test_delete_says_whether_there_was_a_value(backend: Harness) -> None:
    s = store(backend)
    await s.set(K, b"1", 30)
    assert await s.delete(K) is True
    assert await s.delete(K) is False
    assert await s.get(K) is None


async def test_values_expire_after_their_ttl_and_a_write_renews_it(backend: Harness) -> None:
    s = store(backend)
    await s.set("{t}:short", b"1", 10)
    await s.set("{t}:long", b"2", 100)
    await backend.advance(9.5)
    assert await s.get("{t}:short") == b"1"
    await s.set("{t}:short", b"1b", 10)  # a write renews the TTL; reads do not
    await backend.advance(9.5)
    assert await s.get("{t}:short") == b"1b"
    await backend.advance(1.0)
    assert await s.get("{t}:short") is None
    assert await s.get("{t}:long") == b"2"


async def test_compare_and_set(backend: Harness) -> None:
    s = store(backend)
    assert await s.compare_and_set(K, b"x", b"1", 30) is False  # expected a value, there is none
    assert await s.get(K) is None
    assert await s.compare_and_set(K, None, b"1", 30) is True  # expected absent: created
    assert await s.compare_and_set(K, None, b"2", 30) is False  # no longer absent
    assert await s.compare_and_set(K, b"2", b"3", 30) is False  # wrong expectation
    assert await s.get(K) == b"1"
    assert await s.compare_and_set(K, b"1", b"3", 30) is True
    assert await s.get(K) == b"3"
    assert await s.compare_and_set(K, b"3", None, 30) is True  # value None deletes
    assert await s.get(K) is None


async def test_compare_and_set_renews_the_ttl(backend: Harness) -> None:
    s = store(backend)
    await s.set(K, b"1", 10)
    await backend.advance(9)
    assert await s.compare_and_set(K, b"1", b"2", 10) is True
    await backend.advance(9)
    assert await s.get(K) == b"2"


async def test_incr_counts_from_zero_and_renews_the_ttl(backend: Harness) -> None:
    s = store(backend)
    assert await s.incr(K, 1, 10) == 1
    assert await s.incr(K, 5, 10) == 6
    assert await s.incr(K, -7, 10) == -1
    await backend.advance(9)
    assert await s.incr(K, 1, 10) == 0
    await backend.advance(9)
    assert await s.get(K) == b"0"
    await backend.advance(2)
    assert await s.get(K) is None


async def test_incr_of_a_stored_json_integer(backend: Harness) -> None:
    s = store(backend)
    await s.set(K, b"41", 30)
    assert await s.incr(K, 1, 30) == 42


@pytest.mark.parametrize("stored", [b'"5"', b"5.0", b"true", b"[1]", b"05", b"99999999999999999999"])
async def test_incr_of_anything_but_an_integer_is_refused_and_changes_nothing(backend: Harness, stored: bytes) -> None:
    s = store(backend)
    await s.set(K, stored, 30)
    with pytest.raises(InvalidArguments, match="not an integer"):
        await s.incr(K, 1, 30)
    assert await s.get(K) == stored


async def test_a_ttl_must_be_positive(backend: Harness) -> None:
    s = store(backend)
    for call in (lambda: s.set(K, b"1", 0), lambda: s.incr(K, 1, -1), lambda: s.compare_and_set(K, None, b"1", 0)):
        with pytest.raises(ValueError, match="TTL must be positive"):
            await call()


async def test_concurrent_increments_are_never_lost(backend: Harness) -> None:
    s = store(backend)
    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(s.incr, K, 1, 30)
    assert await s.get(K) == b"50"


async def test_concurrent_updates_through_a_handle_are_never_lost(backend: Harness) -> None:
    state = State(StateSpace(store(backend)), "{t}")
    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(lambda i=i: state.update("items", lambda items: [*items, i], default=[]))
    assert sorted(await state.get("items")) == list(range(20))


async def test_only_one_of_many_concurrent_if_absent_writers_wins(backend: Harness) -> None:
    s = store(backend)
    results: list[bool] = []

    async def claim(i: int) -> None:
        results.append(await s.set(K, str(i).encode(), 30, if_absent=True))

    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(claim, i)
    assert results.count(True) == 1
