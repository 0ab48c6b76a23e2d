"""Leased allowance (``mcplane.backends.lease``): never more than the exact limiter, on memory and real Redis.

The memory limiter is the exact reference and, with a :class:`ManualClock`, a lease source whose
time the test controls: several :class:`LeasedRateLimiter` over one ``MemoryRateLimiter`` are
replicas sharing one bucket. The Redis tests run the same verbs through the Lua scripts.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence

import anyio
import pytest
from redis.asyncio import Redis

from mcplane.backends import Decision, Limit, ManualClock, MemoryRateLimiter, parse_limit
from mcplane.backends.lease import MAX_FETCHES, LeasedRateLimiter, LeaseOptions
from mcplane.backends.rate_limit import Grant
from mcplane.backends.redis import RedisRateLimiter, connect_redis
from mcplane.errors import DependencyUnavailable

from .harness import PrivateRedis


class Counting(MemoryRateLimiter):
    """A memory limiter that counts its leases and exact hits."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__(clock=clock)
        self.leases: list[Grant] = []
        self.hits = 0
        self.in_flight = self.most_in_flight = 0

    async def lease(self, checks: Sequence[tuple[str, Limit]], want: int, *, hold_ms: float = 0.0) -> Grant:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(0)  # a round trip: other calls run meanwhile
        grant = await super().lease(checks, want, hold_ms=hold_ms)
        self.in_flight -= 1
        self.leases.append(grant)
        return grant

    async def hit_all(self, checks: Sequence[tuple[str, Limit]], *, cost: int = 1) -> Decision:
        self.hits += 1
        return await super().hit_all(checks, cost=cost)


async def _settle() -> None:
    """Let the prefetches that are ready run (a yield to the loop, no time passes)."""
    for _ in range(3):
        await asyncio.sleep(0)


async def test_small_limits_are_never_leased(clock: ManualClock) -> None:
    """A burst under 32 (10/minute) keeps every decision of the exact limiter, remaining included."""
    source, exact = Counting(clock), MemoryRateLimiter(clock=clock)
    leased = LeasedRateLimiter(source, clock=clock)
    limit = parse_limit("10/minute")
    for step in range(40):
        clock.advance(1.7 if step % 3 else 0.0)
        assert await leased.hit("k", limit) == await exact.hit("k", limit)
    assert source.leases == []
    assert source.hits == 40


@pytest.mark.parametrize("seed", range(6))
async def test_replicas_never_admit_more_than_the_exact_limiter(clock: ManualClock, seed: int) -> None:
    """The contract: same sequence, exact vs leased replicas sharing one bucket, injected clock.

    At every step the leased replicas together have admitted no more than the exact limiter,
    and the calls they admitted, replayed at the times they were admitted, all pass a fresh
    exact limiter (so no window holds more than the limit allows).
    """
    rng = random.Random(seed)
    limit = parse_limit(rng.choice(["640/minute", "100/second", "2000/hour", "64/second"]))
    source, exact = Counting(clock), MemoryRateLimiter(clock=clock)  # leases yield to the loop
    replicas = [
        LeasedRateLimiter(source, LeaseOptions(max=rng.choice([8, 64]), ttl=0.5), clock=clock) for _ in range(4)
    ]
    start, admitted_at = clock.now, list[float]()
    leased_total = exact_total = 0
    for _ in range(3000):
        clock.advance(rng.choice([0.0, 0.0, 0.0, limit.interval_ms / 2000, limit.interval_ms / 1000, 0.2]))
        leased_decision = await rng.choice(replicas).hit("k", limit)
        if leased_decision.allowed:
            leased_total += 1
            admitted_at.append(clock.now)
        exact_total += (await exact.hit("k", limit)).allowed
        assert leased_total <= exact_total
        if rng.random() < 0.3:
            await _settle()
    assert leased_total > exact_total / 2  # leasing admits, it does not just refuse
    replay_clock = ManualClock(start)
    replay = MemoryRateLimiter(clock=replay_clock)
    for when in admitted_at:
        replay_clock.advance(when - replay_clock.now)
        assert (await replay.hit("k", limit)).allowed


async def test_calls_held_across_a_refill_do_not_add_to_a_full_burst(clock: ManualClock) -> None:
    """Eight replicas hold calls, the bucket refills, a ninth empties it: the held calls are gone."""
    source, exact = MemoryRateLimiter(clock=clock), MemoryRateLimiter(clock=clock)
    limit = parse_limit("640/second")
    holders = [LeasedRateLimiter(source, LeaseOptions(ttl=0.5), clock=clock) for _ in range(8)]
    burst = LeasedRateLimiter(source, LeaseOptions(ttl=0.5), clock=clock)
    leased_total = exact_total = 0
    for holder in holders:
        for _ in range(7):  # leases of 2, 4 and 8: each holder keeps 7 calls
            leased_total += (await holder.hit("k", limit)).allowed
            exact_total += (await exact.hit("k", limit)).allowed
    clock.advance(0.3)  # well within the ttl, but the bucket is full again
    while (await burst.hit("k", limit)).allowed:
        leased_total += 1
    while (await exact.hit("k", limit)).allowed:
        exact_total += 1
    for holder in holders:  # each spends what it may still hold
        while (await holder.hit("k", limit)).allowed:
            leased_total += 1
    assert leased_total <= exact_total


async def test_a_refusal_carries_the_exact_retry_after(clock: ManualClock) -> None:
    source = MemoryRateLimiter(clock=clock)
    leased = LeasedRateLimiter(source, clock=clock)
    limit = parse_limit("640/minute")
    admitted = 0
    while (await leased.hit("k", limit)).allowed:
        admitted += 1
        assert admitted <= limit.amount
    clock.advance(0.01)
    refused = await leased.hit("k", limit)
    exact = await source.hit("k", limit)  # the exact limiter on the same bucket, same instant
    assert not refused.allowed
    assert (refused.retry_after_ms, refused.key) == (exact.retry_after_ms, exact.key)


async def test_held_calls_lapse_after_the_ttl(clock: ManualClock) -> None:
    source = Counting(clock)
    leased = LeasedRateLimiter(source, LeaseOptions(max=64, ttl=1.0), clock=clock)
    limit = parse_limit("1000/minute")  # a 60 ms interval: the ttl, not the refill, ends the lease
    for _ in range(7):  # leases of 2 and 4 spent at once: the next one is larger
        assert (await leased.hit("k", limit)).allowed
    assert [grant.granted for grant in source.leases] == [2, 4, 8]
    clock.advance(0.999)
    assert (await leased.hit("k", limit)).allowed  # still held
    assert len(source.leases) == 3
    clock.advance(0.002)
    assert (await leased.hit("k", limit)).allowed
    assert len(source.leases) == 4  # the rest lapsed: a new lease, smaller (calls lapsed unspent)
    assert source.leases[3].granted == 4


async def test_held_calls_lapse_as_a_full_bucket_refills(clock: ManualClock) -> None:
    """Held calls are only kept while the bucket's refill could not have given them back."""
    source = Counting(clock)
    leased = LeasedRateLimiter(source, LeaseOptions(max=64, ttl=10.0), clock=clock)
    limit = parse_limit("6400/second")  # a full bucket; the hold is 1/16 of a second
    for _ in range(7):
        assert (await leased.hit("k", limit)).allowed
    assert [grant.granted for grant in source.leases] == [2, 4, 8]  # 7 calls held
    clock.advance(1 / 16)  # the hold is over, the 14 calls leased are not refilled yet
    assert (await leased.hit("k", limit)).allowed
    assert len(source.leases) == 3
    clock.advance(14 * limit.interval_ms / 1000)  # the bucket is full again: nothing may be held
    assert (await leased.hit("k", limit)).allowed
    assert len(source.leases) == 4


async def test_at_most_one_fetch_in_flight_and_waiters_share_it(clock: ManualClock) -> None:
    source = Counting(clock)
    leased = LeasedRateLimiter(source, LeaseOptions(max=64), clock=clock)
    limit = parse_limit("100000/second")
    decisions = await asyncio.gather(*(leased.hit("k", limit) for _ in range(40)))
    assert all(decision.allowed for decision in decisions)
    assert [grant.granted for grant in source.leases] == [2, 4, 8, 16, 32]  # each spent at once: doubled
    assert source.most_in_flight == 1
    for _ in range(200):  # a steady stream: the next lease is fetched before the last one runs out
        assert (await leased.hit("k", limit)).allowed
        await _settle()
    assert len(source.leases) < 20


async def test_calls_faster_than_a_round_trip_find_the_next_lease_there(clock: ManualClock) -> None:
    """32 callers, each with a call every loop turn (as at concurrency 32), a fetch two loop turns:
    one lease of 64 per round trip cannot keep up, so once the pace is known the next leases are
    fetched ahead and no call waits for one; the calls held and the fetches stay bounded."""
    source = Counting(clock)
    leased = LeasedRateLimiter(source, LeaseOptions(max=64), clock=clock)
    checks = (("k", parse_limit("1000000/second")),)
    waited = [0, 0]  # while the lease grows and the pace is learnt; after
    most_held = 0

    async def caller() -> None:
        nonlocal most_held
        for turn in range(100):
            if not leased.take_held(checks):  # what the middleware does
                waited[turn >= 30] += 1
                assert (await leased.hit_all(checks)).allowed
            account = leased._accounts[checks]  # pyright: ignore[reportPrivateUsage]
            assert account is not None
            most_held = max(most_held, sum(lease.left for lease in account.leases))
            await asyncio.sleep(0)

    await asyncio.gather(*(caller() for _ in range(32)))
    assert waited[0] > 0
    assert waited[1] == 0
    assert most_held <= 4 * 64
    assert source.most_in_flight <= MAX_FETCHES
    assert all(grant.granted <= 64 for grant in source.leases)
    assert sum(grant.granted for grant in source.leases) <= 32 * 100 + 4 * 64  # no more than the calls took


@pytest.mark.parametrize("seed", range(4))
async def test_taking_a_held_call_decides_as_hit_all(clock: ManualClock, seed: int) -> None:
    """``take_held`` (then ``hit_all`` when it says no) admits the same calls at the same times as
    ``hit_all`` alone, leases the same, and never waits: the middleware's short way."""
    rng = random.Random(seed)
    limit = parse_limit(rng.choice(["640/minute", "100/second", "6400/second"]))
    plain = LeasedRateLimiter(Counting(clock), LeaseOptions(max=16, ttl=0.5), clock=clock)
    short = LeasedRateLimiter(Counting(clock), LeaseOptions(max=16, ttl=0.5), clock=clock)
    kept = (("k", limit),)  # the middleware passes the same tuple every time
    plain_admitted: list[bool] = []
    short_admitted: list[bool] = []
    held_admitted = 0
    for _ in range(400):
        clock.advance(rng.choice([0.0, 0.0, 0.001, 0.01, 0.2]))
        checks = kept if rng.random() < 0.8 else (("k", limit),)  # now and then an equal, other tuple
        plain_admitted.append((await plain.hit_all(checks)).allowed)
        if short.take_held(checks):
            held_admitted += 1
            short_admitted.append(True)
        else:
            short_admitted.append((await short.hit_all(checks)).allowed)
        await _settle()
    assert short_admitted == plain_admitted
    assert isinstance(plain.source, Counting)
    assert isinstance(short.source, Counting)
    assert short.source.leases == plain.source.leases
    assert held_admitted > 100
    assert not short.take_held((("never-seen", limit),))


async def test_other_costs_are_exact(clock: ManualClock) -> None:
    source = Counting(clock)
    leased = LeasedRateLimiter(source, clock=clock)
    limit = parse_limit("100/second")
    decision = await leased.hit("k", limit, cost=5)
    assert (decision.allowed, decision.remaining, source.hits, source.leases) == (True, 95, 1, [])


# ------------------------------------------------------------------------------------------- real Redis
async def test_redis_replicas_never_admit_more_than_the_bucket(redis_client: Redis, prefix: str) -> None:
    """Four replicas (each its own limiter) share one bucket on Redis, hit concurrently."""
    limit = parse_limit("640/hour")  # one call back every 5.6 s: the test sees at most a couple
    replicas = [LeasedRateLimiter(RedisRateLimiter(redis_client, prefix=prefix)) for _ in range(4)]
    started = time.monotonic()

    async def calls(replica: LeasedRateLimiter, count: int) -> int:
        admitted = 0
        for _ in range(count):
            admitted += (await replica.hit("{t}:shared", limit)).allowed
        return admitted

    admitted = sum(await asyncio.gather(*(calls(replica, 80) for replica in replicas for _ in range(4))))
    earned = int((time.monotonic() - started) * 1000 / limit.interval_ms) + 1
    assert admitted <= limit.amount + earned  # what the exact limiter could have admitted at most
    cap = limit.amount // 16
    assert admitted >= limit.amount - 4 * cap - 1  # under-admission: what replicas hold, and the hold
    exact = await RedisRateLimiter(redis_client, prefix=prefix).hit("{t}:shared", limit)
    assert not exact.allowed or admitted + 1 <= limit.amount + earned


async def test_redis_refusal_carries_the_exact_retry_after(redis_client: Redis, prefix: str) -> None:
    limit = parse_limit("640/hour")
    exact = RedisRateLimiter(redis_client, prefix=prefix)
    leased = LeasedRateLimiter(RedisRateLimiter(redis_client, prefix=prefix))
    for _ in range(limit.amount):
        await exact.hit("k", limit)
    before = await exact.hit("k", limit)
    refused = await leased.hit("k", limit)
    after = await exact.hit("k", limit)
    assert [before.allowed, refused.allowed, after.allowed] == [False, False, False]
    assert before.retry_after_ms >= refused.retry_after_ms >= after.retry_after_ms  # one formula, time passing
    assert refused.key == "k"


@pytest.fixture(params=["redis_client", "cluster_client"])
def any_redis(request: pytest.FixtureRequest) -> Redis:
    """One Redis server, then a Cluster."""
    client: Redis = request.getfixturevalue(str(request.param))
    return client


async def test_redis_lease_matches_the_memory_lease(any_redis: Redis, prefix: str) -> None:
    """The Lua script and ``lease_step`` grant the same calls from the same bucket state (one server, Cluster)."""
    clock = ManualClock()
    memory = MemoryRateLimiter(clock=clock)
    redis = RedisRateLimiter(any_redis, prefix=prefix)
    checks = [("{t}:a", parse_limit("640/hour")), ("{t}:b", parse_limit("100/hour"))]
    for want in (10, 50, 50, 1, 5):
        got, expected = await redis.lease(checks, want), await memory.lease(checks, want)
        assert (got.granted, got.index) == (expected.granted, expected.index)
    assert (await redis.lease(checks, 5)).granted == 0
    assert (await memory.lease(checks, 5)).granted == 0


async def test_dead_redis_fails_like_the_exact_limiter(private_redis: PrivateRedis, clock: ManualClock) -> None:
    await private_redis.start()
    client = connect_redis(private_redis.url, timeout=1.0)
    limit = parse_limit("64000/second")
    try:
        leased = LeasedRateLimiter(RedisRateLimiter(client, prefix="t:"), LeaseOptions(ttl=0.05), clock=clock)
        assert (await leased.hit("k", limit)).allowed
        private_redis.stop()
        assert (await leased.hit("k", limit)).allowed  # taken while Redis answered: still valid
        clock.advance(0.051)  # held calls lapse; every hit now asks Redis, and fails fast and clearly
        for _ in range(2):
            with anyio.fail_after(5), pytest.raises(DependencyUnavailable) as info:
                await leased.hit("k", limit)
            assert info.value.code == "dependency_unavailable"
    finally:
        await client.aclose()


# ------------------------------------------------------------------------------------------- configuration
def test_the_lease_is_configured_on_the_redis_backend(redis_client: Redis) -> None:
    from mcplane.backends.registry import RATE_LIMIT, Opening
    from mcplane.config import PlaneConfig

    tree = {
        "redis_url": "redis://127.0.0.1:6379/0",
        "rate_limit": {"backend": "redis", "lease": {"max": 32, "ttl": "250ms"}},
    }
    config = PlaneConfig.model_validate(tree)
    built = RATE_LIMIT.build("redis", Opening(config, lambda: redis_client))
    assert isinstance(built, LeasedRateLimiter)
    assert built.options == LeaseOptions(max=32, ttl=0.25)
    assert isinstance(built.source, RedisRateLimiter)
    plain = PlaneConfig.model_validate({"redis_url": "redis://127.0.0.1:6379/0", "rate_limit": {"backend": "redis"}})
    assert isinstance(RATE_LIMIT.build("redis", Opening(plain, lambda: redis_client)), RedisRateLimiter)


def test_a_lease_needs_the_redis_backend() -> None:
    from pydantic import ValidationError

    from mcplane.config import PlaneConfig

    with pytest.raises(ValidationError, match="backend: redis only"):
        PlaneConfig.model_validate({"rate_limit": {"lease": {}}})
    with pytest.raises(ValidationError):
        PlaneConfig.model_validate(
            {"redis_url": "redis://127.0.0.1:6379/0", "rate_limit": {"backend": "redis", "lease": {"max": 0}}}
        )


async def test_a_lease_rides_the_hits_pipeline_and_survives_a_script_flush(private_redis: PrivateRedis) -> None:
    await private_redis.start()
    client = connect_redis(private_redis.url)
    try:
        limiter = RedisRateLimiter(client, prefix="t:")
        checks = [("k", parse_limit("6400/hour"))]
        await client.script_flush()  # NOSCRIPT in the pipeline: the lease script is loaded and run again
        grants = await asyncio.gather(limiter.lease(checks, 8), limiter.hit_all(checks), limiter.lease(checks, 8))
        assert [grants[0].granted, grants[2].granted] == [8, 8]
        assert (await limiter.hit_all(checks)).remaining == 6400 - 18
    finally:
        await client.aclose()
