"""Auto-pipelined rate-limit hits: one round trip for a turn's hits, each with its own atomic answer."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.abc
import pytest
from redis.asyncio import Redis

from mcplane.backends import Decision, parse_limit
from mcplane.backends.redis import RedisRateLimiter, connect_redis
from mcplane.errors import DependencyUnavailable

from .harness import PrivateRedis


class Pipelines:
    """Counts the round trips a limiter makes to Redis (and how many hits each carried)."""

    def __init__(self, limiter: RedisRateLimiter, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sizes: list[int] = []
        real = limiter._round_trip  # pyright: ignore[reportPrivateUsage]

        async def counted(packed: bytes, count: int) -> list[Any]:
            self.sizes.append(count)
            return await real(packed, count)

        monkeypatch.setattr(limiter, "_round_trip", counted)


async def _hit_together(limiter: RedisRateLimiter, keys: list[str], limit: str) -> list[Decision]:
    decisions: list[Decision | None] = [None] * len(keys)

    async def hit(i: int) -> None:
        decisions[i] = await limiter.hit(keys[i], parse_limit(limit))

    async with anyio.create_task_group() as group:
        for i in range(len(keys)):
            group.start_soon(hit, i)
    assert all(decision is not None for decision in decisions)
    return [decision for decision in decisions if decision is not None]


async def test_concurrent_hits_share_one_round_trip(
    redis_client: Redis, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    limiter = RedisRateLimiter(redis_client, prefix=prefix)
    pipelines = Pipelines(limiter, monkeypatch)
    decisions = await _hit_together(limiter, ["shared"] * 12, "5/minute")
    assert pipelines.sizes == [12]
    assert sorted(d.allowed for d in decisions) == [False] * 7 + [True] * 5  # atomic, one script run each
    assert sorted(d.remaining for d in decisions if d.allowed) == [0, 1, 2, 3, 4]
    assert all(d.retry_after_ms > 0 for d in decisions if not d.allowed)
    # A lone hit goes alone.
    assert (await limiter.hit("alone", parse_limit("5/minute"))).allowed
    assert pipelines.sizes == [12, 1]


async def test_pipelining_can_be_turned_off(redis_client: Redis, prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    limiter = RedisRateLimiter(redis_client, prefix=prefix, pipelining=False)
    pipelines = Pipelines(limiter, monkeypatch)
    decisions = await _hit_together(limiter, ["k"] * 4, "3/minute")
    assert [d.allowed for d in decisions].count(True) == 3
    assert pipelines.sizes == []


async def test_a_cancelled_caller_does_not_cancel_the_others(redis_client: Redis, prefix: str) -> None:
    limiter = RedisRateLimiter(redis_client, prefix=prefix)
    limit = parse_limit("10/minute")
    answers: list[int] = []
    gave_up: list[bool] = []

    async def hit() -> None:
        answers.append((await limiter.hit("k", limit)).remaining)

    async def doomed() -> None:
        with anyio.CancelScope() as scope:
            scope.cancel()
            await limiter.hit("k", limit)  # joins the batch, then gives up at its first checkpoint
        gave_up.append(scope.cancelled_caught)

    async with anyio.create_task_group() as group:
        group.start_soon(hit)
        group.start_soon(doomed)
        group.start_soon(hit)
    assert gave_up == [True]
    assert sorted(answers) == [7, 9]  # the abandoned hit still ran on Redis, between the other two


async def test_a_redis_that_lost_its_scripts_is_reloaded_in_a_pipeline(private_redis: PrivateRedis) -> None:
    await private_redis.start()
    client = connect_redis(private_redis.url)
    try:
        limiter = RedisRateLimiter(client, prefix="t:")
        assert all(d.allowed for d in await _hit_together(limiter, ["a", "b"], "5/minute"))
        await client.script_flush()
        decisions = await _hit_together(limiter, ["a", "b", "c"], "5/minute")
        assert [d.remaining for d in decisions] == [3, 3, 4]
    finally:
        await client.aclose()


async def test_hits_that_arrive_during_a_round_trip_go_together_in_the_next(
    redis_client: Redis, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    limiter = RedisRateLimiter(redis_client, prefix=prefix)
    pipelines = Pipelines(limiter, monkeypatch)
    limit = parse_limit("100/minute")
    remaining: list[int] = []

    async def hit() -> None:
        remaining.append((await limiter.hit("k", limit)).remaining)

    async with anyio.create_task_group() as group:
        group.start_soon(hit)
        await anyio.wait_all_tasks_blocked()  # the first hit is on the wire now
        for _ in range(5):
            group.start_soon(hit)
    assert pipelines.sizes == [1, 5]  # the first went alone; the five that waited, together
    assert sorted(remaining) == [94, 95, 96, 97, 98, 99]


async def test_hits_waiting_behind_a_round_trip_that_times_out_fail_with_it() -> None:
    """A Redis that accepts and never answers: nobody waits for more than the one round trip."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)

    async def hold(stream: anyio.abc.SocketStream) -> None:
        async with stream:  # closed when the test cancels the listener
            await anyio.sleep_forever()

    client = connect_redis(f"redis://127.0.0.1:{port}/0", timeout=0.3, retries=0)
    limiter = RedisRateLimiter(client)
    failures: list[str] = []
    elapsed = float("inf")

    async def hit() -> None:
        try:
            await limiter.hit("k", parse_limit("5/minute"))
        except DependencyUnavailable as exc:
            failures.append(exc.code)

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(listener.serve, hold)
            started = anyio.current_time()
            with anyio.fail_after(5):
                async with anyio.create_task_group() as hits:
                    hits.start_soon(hit)
                    await anyio.sleep(0.05)  # the first hit is waiting for its answer
                    for _ in range(3):
                        hits.start_soon(hit)
            elapsed = anyio.current_time() - started
            group.cancel_scope.cancel()
    finally:
        await client.aclose()
        await listener.aclose()
    assert failures == ["dependency_unavailable"] * 4
    assert elapsed < 0.6  # one timeout, not one per hit in turn


@pytest.mark.parametrize("retries", [0, 1])
async def test_a_killed_connection_is_replaced_by_the_next_batch(redis_url: str, prefix: str, retries: int) -> None:
    """Redis drops the pooled connection the hits went on: the next batch reconnects and is answered."""
    client, killer = connect_redis(redis_url, retries=retries), connect_redis(redis_url)
    try:
        limiter = RedisRateLimiter(client, prefix=prefix)
        limit = parse_limit("10/minute")
        assert (await limiter.hit("k", limit)).remaining == 9
        connection_id = await client.client_id()  # the pool's one connection, the one the hit went on
        assert await killer.client_kill_filter(_id=str(connection_id)) == 1
        decisions = await _hit_together(limiter, ["k", "k", "k"], "10/minute")
        assert sorted(d.remaining for d in decisions) == [6, 7, 8]  # each ran once: nothing lost, nothing doubled
        assert await client.client_id() != connection_id
    finally:
        await killer.delete(*[key async for key in killer.scan_iter(match=prefix + "*")])
        await client.aclose()
        await killer.aclose()


async def test_a_hit_is_sent_in_the_loop_turn_after_its_own(
    redis_client: Redis, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pipeline's task is started by the hit that finds nothing queued: its first step, in the
    next turn of the loop, takes the turn's hits and writes them (no callback turn before the task)."""
    import asyncio

    limiter = RedisRateLimiter(redis_client, prefix=prefix)
    loop = asyncio.get_running_loop()
    turn = 0
    ticking = True
    sent_at: list[int] = []

    def tick() -> None:  # once per turn of the loop
        nonlocal turn
        turn += 1
        if ticking:
            loop.call_soon(tick)

    real = limiter._round_trip  # pyright: ignore[reportPrivateUsage]

    async def recorded(packed: bytes, count: int) -> list[Any]:
        sent_at.append(turn)
        return await real(packed, count)

    monkeypatch.setattr(limiter, "_round_trip", recorded)
    loop.call_soon(tick)
    await asyncio.sleep(0)
    for _ in range(3):
        start = turn
        hits = [asyncio.ensure_future(limiter.hit(f"k{i}", parse_limit("100/second"))) for i in range(3)]
        decisions = await asyncio.gather(*hits)
        assert all(decision.allowed for decision in decisions)
        assert sent_at[-1] - start <= 2  # the hits' own turn (their tasks' first step), then the pipeline's
    ticking = False
    assert len(sent_at) == 3  # one round trip per turn's three hits
