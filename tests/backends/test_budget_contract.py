"""The ``BudgetStore`` contract, run against the memory and the Redis implementation."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redis.asyncio import Redis

from mcplane.backends import BudgetStore, ManualClock, MemoryBudgetStore
from mcplane.backends.redis import RedisBudgetStore

from .harness import Harness, RedisTime, memory_advance

HOUR = 3600.0
SLACK_MS = 250


@pytest.fixture(params=["memory", "redis", "cluster"])
def backend(request: pytest.FixtureRequest, clock: ManualClock, prefix: str) -> Iterator[Harness]:
    if request.param == "memory":
        yield Harness(MemoryBudgetStore(clock=clock), memory_advance(clock), "memory")
    else:
        client: Redis = request.getfixturevalue("redis_client" if request.param == "redis" else "cluster_client")
        yield Harness(RedisBudgetStore(client, prefix=prefix), RedisTime(client, prefix), str(request.param))


def store(backend: Harness) -> BudgetStore:
    assert isinstance(backend.impl, MemoryBudgetStore | RedisBudgetStore)
    return backend.impl


async def test_spend_within_the_budget(backend: Harness) -> None:
    b = store(backend)
    first = await b.try_spend("alice", 30, 100, HOUR)
    assert (first.allowed, first.spent, first.remaining, first.key) == (True, 30, 70, "alice")
    assert HOUR * 1000 - SLACK_MS <= first.reset_ms <= HOUR * 1000
    second = await b.try_spend("alice", 70, 100, HOUR)
    assert (second.allowed, second.spent, second.remaining) == (True, 100, 0)


async def test_a_spend_that_would_exceed_is_refused_and_spends_nothing(backend: Harness) -> None:
    b = store(backend)
    await b.try_spend("alice", 90, 100, HOUR)
    refused = await b.try_spend("alice", 11, 100, HOUR)
    assert (refused.allowed, refused.spent, refused.remaining) == (False, 90, 10)
    assert (await b.try_spend("alice", 10, 100, HOUR)).allowed
    assert not (await b.try_spend("alice", 1, 100, HOUR)).allowed


async def test_a_cost_above_the_limit_never_fits(backend: Harness) -> None:
    refused = await store(backend).try_spend("alice", 101, 100, HOUR)
    assert (refused.allowed, refused.spent, refused.remaining, refused.reset_ms) == (False, 0, 100, 0)


async def test_the_window_opens_with_the_first_spend_and_resets(backend: Harness) -> None:
    b = store(backend)
    await b.try_spend("alice", 100, 100, HOUR)
    await backend.advance(HOUR - 60)
    late = await b.try_spend("alice", 1, 100, HOUR)
    assert not late.allowed
    assert 60_000 - SLACK_MS <= late.reset_ms <= 60_000
    await backend.advance(61)
    fresh = await b.try_spend("alice", 1, 100, HOUR)
    assert (fresh.allowed, fresh.spent) == (True, 1)


async def test_budgets_are_per_key(backend: Harness) -> None:
    b = store(backend)
    await b.try_spend("alice", 100, 100, HOUR)
    assert (await b.try_spend("bob", 100, 100, HOUR)).allowed


async def test_try_spend_all_is_all_or_nothing(backend: Harness) -> None:
    b = store(backend)
    principal, session = "{alice}", "{alice}:session:s1"
    assert (await b.try_spend_all([(principal, 1000), (session, 50)], 40, HOUR)).allowed
    refused = await b.try_spend_all([(principal, 1000), (session, 50)], 20, HOUR)
    assert (refused.allowed, refused.key, refused.remaining) == (False, session, 10)
    # the principal budget was not touched by the refused call
    assert (await b.try_spend(principal, 0, 1000, HOUR)).spent == 40
    other = await b.try_spend_all([(principal, 1000), ("{alice}:session:s2", 50)], 20, HOUR)
    assert (other.allowed, other.spent, other.key) == (True, 20, "{alice}:session:s2")


async def test_charge_may_overdraw_and_then_refuses(backend: Harness) -> None:
    b = store(backend)
    await b.try_spend("alice", 90, 100, HOUR)
    over = await b.charge([("alice", 100)], 25, HOUR)
    assert (over.allowed, over.spent, over.remaining) == (False, 115, 0)
    assert not (await b.try_spend("alice", 1, 100, HOUR)).allowed
    within = await b.charge([("bob", 100)], 25, HOUR)
    assert (within.allowed, within.spent, within.remaining) == (True, 25, 75)


async def test_zero_cost_reports_without_opening_a_window(backend: Harness) -> None:
    b = store(backend)
    probe = await b.try_spend("alice", 0, 100, HOUR)
    assert (probe.allowed, probe.spent, probe.remaining, probe.reset_ms) == (True, 0, 100, 0)


async def test_invalid_spends_are_rejected(backend: Harness) -> None:
    b = store(backend)
    with pytest.raises(ValueError, match="negative"):
        await b.try_spend("alice", -1, 100, HOUR)
    with pytest.raises(ValueError, match="window"):
        await b.try_spend("alice", 1, 100, 0)
    with pytest.raises(ValueError, match="hash tag"):
        await b.try_spend_all([("{alice}", 10), ("{bob}", 10)], 1, HOUR)


async def test_memory_store_forgets_closed_windows(clock: ManualClock) -> None:
    b = MemoryBudgetStore(clock=clock, sweep_every=3)
    await b.try_spend("a", 1, 10, 60)
    await b.try_spend("b", 1, 10, 60)
    assert len(b) == 2
    clock.advance(61)
    await b.try_spend("c", 1, 10, 60)  # the 3rd operation sweeps the two closed windows
    assert len(b) == 1
