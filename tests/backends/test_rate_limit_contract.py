"""The ``RateLimiter`` contract, run against the memory and the Redis implementation."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redis.asyncio import Redis

from mcplane.backends import Limit, ManualClock, MemoryRateLimiter, RateLimiter, parse_limit, parse_limits
from mcplane.backends.redis import RedisRateLimiter

from .harness import Harness, RedisTime, memory_advance

TEN_PER_MINUTE = parse_limit("10/minute")  # one call back every 6 s
SLACK_MS = 250  # real time that may pass between two Redis round trips in a test


@pytest.fixture(params=["memory", "redis", "cluster"])
def backend(request: pytest.FixtureRequest, clock: ManualClock, prefix: str) -> Iterator[Harness]:
    if request.param == "memory":
        yield Harness(MemoryRateLimiter(clock=clock), memory_advance(clock), "memory")
    else:
        client: Redis = request.getfixturevalue("redis_client" if request.param == "redis" else "cluster_client")
        yield Harness(RedisRateLimiter(client, prefix=prefix), RedisTime(client, prefix), str(request.param))


def limiter(backend: Harness) -> RateLimiter:
    assert isinstance(backend.impl, MemoryRateLimiter | RedisRateLimiter)
    return backend.impl


@pytest.mark.parametrize(
    ("text", "amount", "period"),
    [
        ("100/minute", 100, 60.0),
        ("10/second", 10, 1.0),
        ("5 per 2 seconds", 5, 2.0),
        ("1000/h", 1000, 3600.0),
        ("20 per 500ms", 20, 0.5),
        ("3 / 1.5 min", 3, 90.0),
        ("7 PER DAY", 7, 86400.0),
    ],
)
def test_parse_limit(text: str, amount: int, period: float) -> None:
    assert parse_limit(text) == Limit(amount, period)


@pytest.mark.parametrize("text", ["", "ten/minute", "10/fortnight", "0/minute", "10", "10/0s", "-1/s"])
def test_parse_limit_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"rate limit|unit"):
        parse_limit(text)


def test_parse_limits_takes_one_or_many() -> None:
    assert parse_limits("2/s") == (Limit(2, 1.0),)
    assert parse_limits(["2/s", "10/minute"]) == (Limit(2, 1.0), Limit(10, 60.0))
    assert str(Limit(5, 2.0)) == "5/2s"


async def test_burst_then_refusal_with_retry_after(backend: Harness) -> None:
    rl = limiter(backend)
    remaining = [(await rl.hit("alice", TEN_PER_MINUTE)).remaining for _ in range(10)]
    assert remaining == [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
    refused = await rl.hit("alice", TEN_PER_MINUTE)
    assert (refused.allowed, refused.remaining, refused.key) == (False, 0, "alice")
    assert 6000 - SLACK_MS <= refused.retry_after_ms <= 6000


async def test_refused_hits_spend_nothing_and_retry_after_is_honest(backend: Harness) -> None:
    rl = limiter(backend)
    for _ in range(10):
        assert (await rl.hit("alice", TEN_PER_MINUTE)).allowed
    for _ in range(5):
        assert not (await rl.hit("alice", TEN_PER_MINUTE)).allowed
    await backend.advance(6.0)
    assert (await rl.hit("alice", TEN_PER_MINUTE)).allowed
    assert not (await rl.hit("alice", TEN_PER_MINUTE)).allowed


async def test_no_double_burst_across_a_window_edge(backend: Harness) -> None:
    """A fixed window would allow 10 just before a minute boundary and 10 more just after."""
    rl = limiter(backend)
    await backend.advance(59.0)
    assert all([(await rl.hit("alice", TEN_PER_MINUTE)).allowed for _ in range(10)])
    await backend.advance(2.0)  # any minute boundary is now behind us
    after_edge = [(await rl.hit("alice", TEN_PER_MINUTE)).allowed for _ in range(10)]
    assert after_edge.count(True) == 0


async def test_full_period_refills_the_whole_burst(backend: Harness) -> None:
    rl = limiter(backend)
    for _ in range(10):
        await rl.hit("alice", TEN_PER_MINUTE)
    await backend.advance(60.0)
    decisions = [await rl.hit("alice", TEN_PER_MINUTE) for _ in range(11)]
    assert [d.allowed for d in decisions].count(True) == 10
    assert decisions[0].remaining == 9


async def test_keys_and_limits_are_independent(backend: Harness) -> None:
    rl = limiter(backend)
    two_per_minute = parse_limit("2/minute")
    for _ in range(2):
        await rl.hit("alice", two_per_minute)
    assert not (await rl.hit("alice", two_per_minute)).allowed
    assert (await rl.hit("bob", two_per_minute)).allowed
    assert (await rl.hit("alice", parse_limit("3/minute"))).allowed


async def test_cost_takes_several_calls_at_once(backend: Harness) -> None:
    rl = limiter(backend)
    assert (await rl.hit("alice", TEN_PER_MINUTE, cost=7)).remaining == 3
    refused = await rl.hit("alice", TEN_PER_MINUTE, cost=4)
    assert not refused.allowed
    assert 6000 - SLACK_MS <= refused.retry_after_ms <= 6000
    assert (await rl.hit("alice", TEN_PER_MINUTE, cost=3)).remaining == 0
    with pytest.raises(ValueError, match="never fit"):
        await rl.hit("alice", TEN_PER_MINUTE, cost=11)
    with pytest.raises(ValueError, match="at least 1"):
        await rl.hit("alice", TEN_PER_MINUTE, cost=0)


async def test_hit_all_is_all_or_nothing(backend: Harness) -> None:
    rl = limiter(backend)
    mine, shared = "{tool:search}:alice", "{tool:search}:global"
    three = parse_limit("3/minute")
    assert (await rl.hit_all([(mine, TEN_PER_MINUTE), (shared, three)])).remaining == 2
    tightest = await rl.hit_all([(mine, TEN_PER_MINUTE), (shared, three)])
    assert (tightest.remaining, tightest.key) == (1, shared)
    await rl.hit(shared, three)  # someone else takes the last global call
    refused = await rl.hit_all([(mine, TEN_PER_MINUTE), (shared, three)])
    assert (refused.allowed, refused.key) == (False, shared)
    # the refusal spent nothing from alice's own bucket: 8 of 10 are left
    assert (await rl.hit(mine, TEN_PER_MINUTE)).remaining == 7


async def test_hit_all_reports_the_longest_wait(backend: Harness) -> None:
    rl = limiter(backend)
    per_second, per_minute = ("{t}:a", parse_limit("1/second")), ("{t}:b", parse_limit("1/minute"))
    await rl.hit_all([per_second, per_minute])
    refused = await rl.hit_all([per_second, per_minute])
    assert refused.key == "{t}:b"
    assert 60000 - SLACK_MS <= refused.retry_after_ms <= 60000


async def test_hit_all_keys_must_share_a_hash_tag(backend: Harness) -> None:
    rl = limiter(backend)
    with pytest.raises(ValueError, match="hash tag"):
        await rl.hit_all([("{a}:x", TEN_PER_MINUTE), ("{b}:x", TEN_PER_MINUTE)])
    with pytest.raises(ValueError, match="hash tag"):
        await rl.hit_all([("alice", TEN_PER_MINUTE), ("bob", TEN_PER_MINUTE)])


async def test_reset_refills_the_bucket(backend: Harness) -> None:
    rl = limiter(backend)
    for _ in range(10):
        await rl.hit("alice", TEN_PER_MINUTE)
    await rl.reset("alice", TEN_PER_MINUTE)
    assert (await rl.hit("alice", TEN_PER_MINUTE)).remaining == 9


async def test_fractional_intervals_fill_exactly(backend: Harness) -> None:
    rl = limiter(backend)
    three_per_second = parse_limit("3/second")  # 333.33… ms per call: float error must not refuse the 3rd
    decisions = [await rl.hit("alice", three_per_second) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]


async def test_memory_limiter_forgets_full_buckets(clock: ManualClock) -> None:
    rl = MemoryRateLimiter(clock=clock, sweep_every=4)
    for name in ("a", "b", "c"):
        await rl.hit(name, TEN_PER_MINUTE)
    assert len(rl) == 3
    clock.advance(60.0)
    await rl.hit("d", TEN_PER_MINUTE)  # the 4th operation sweeps the three full buckets
    assert len(rl) == 1
