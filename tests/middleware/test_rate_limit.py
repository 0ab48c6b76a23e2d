"""The rate_limit slot, driven directly with fake calls, memory backends and a manual clock."""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping
from typing import Any

import pytest
from mcp_types import CallToolResult, TextContent

from mcplane.backends import ManualClock, MemoryRateLimiter
from mcplane.backends.redis import RedisRateLimiter, connect_redis
from mcplane.context import Context, Principal
from mcplane.errors import ConfigError, DependencyUnavailable, RateLimited
from mcplane.middleware.errors import ErrorsMiddleware
from mcplane.middleware.rate_limit import RateLimitMiddleware, RateLimitOptions
from mcplane.pipeline import Call, CallKind, Pipeline
from mcplane.tool_policy import ToolPolicy
from tests.conftest import error_of

ALICE, BOB = Principal("alice"), Principal("bob")


class Provider:
    """The innermost step: counts the calls that got through."""

    def __init__(self) -> None:
        self.calls: list[Call] = []

    async def __call__(self, call: Call) -> CallToolResult:
        self.calls.append(call)
        return CallToolResult(content=[TextContent(type="text", text="ok")])


def make_call(policy: Mapping[str, Any], principal: Principal = ALICE, *, kind: CallKind = "tool") -> Call:
    return Call(
        kind,
        "search",
        {"q": "x"},
        Context(principal=principal, correlation_id="cid-1"),
        ToolPolicy.from_mapping(policy),
    )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def limiter(clock: ManualClock) -> MemoryRateLimiter:
    return MemoryRateLimiter(clock=clock)


async def run(mw: RateLimitMiddleware, call: Call, provider: Provider, times: int) -> list[bool]:
    """``times`` calls; True for each that got through, False for each refused."""
    outcome: list[bool] = []
    for _ in range(times):
        try:
            await mw(call, provider)
            outcome.append(True)
        except RateLimited:
            outcome.append(False)
    return outcome


async def test_per_principal_limit_refuses_with_retry_after(limiter: MemoryRateLimiter) -> None:
    mw, provider = RateLimitMiddleware(RateLimitOptions(), limiter), Provider()
    policy = {"rate_limit": "3/minute"}
    assert await run(mw, make_call(policy), provider, 3) == [True] * 3
    with pytest.raises(RateLimited) as info:
        await mw(make_call(policy), provider)
    assert info.value.retry_after_ms == 20_000
    assert info.value.details == {"scope": "principal", "limits": ["3/60s"]}
    assert await run(mw, make_call(policy, BOB), provider, 3) == [True] * 3  # bob has his own bucket
    assert len(provider.calls) == 6


async def test_waiting_retry_after_lets_one_call_through(limiter: MemoryRateLimiter, clock: ManualClock) -> None:
    mw, provider = RateLimitMiddleware(RateLimitOptions(), limiter), Provider()
    policy = {"rate_limit": "3/minute"}
    await run(mw, make_call(policy), provider, 4)
    clock.advance(20)
    assert await run(mw, make_call(policy), provider, 2) == [True, False]


async def test_global_scope_is_shared_by_everyone(limiter: MemoryRateLimiter) -> None:
    mw, provider = RateLimitMiddleware(RateLimitOptions(), limiter), Provider()
    policy = {"rate_limit": "2/minute", "rate_limit_scope": "global"}
    assert await run(mw, make_call(policy, ALICE), provider, 1) == [True]
    assert await run(mw, make_call(policy, BOB), provider, 2) == [True, False]
    with pytest.raises(RateLimited) as info:
        await mw(make_call(policy, ALICE), provider)
    assert info.value.details["scope"] == "global"


async def test_both_scopes_and_a_global_refusal_spends_no_principal_quota(limiter: MemoryRateLimiter) -> None:
    mw, provider = RateLimitMiddleware(RateLimitOptions(), limiter), Provider()
    policy = {"rate_limit": "2/minute", "rate_limit_scope": "both"}
    assert await run(mw, make_call(policy, BOB), provider, 2) == [True, True]  # bob uses up the tool
    assert await run(mw, make_call(policy, ALICE), provider, 3) == [False] * 3
    principal_only = {"rate_limit": "2/minute", "rate_limit_scope": ["principal"]}
    assert await run(mw, make_call(principal_only, ALICE), provider, 3) == [True, True, False]


async def test_all_limits_in_a_list_hold(limiter: MemoryRateLimiter, clock: ManualClock) -> None:
    mw, provider = RateLimitMiddleware(RateLimitOptions(), limiter), Provider()
    policy = {"rate_limit": ["2/second", "3/minute"]}
    assert await run(mw, make_call(policy), provider, 3) == [True, True, False]
    clock.advance(1)
    assert await run(mw, make_call(policy), provider, 2) == [True, False]  # the minute limit binds now


async def test_tenants_do_not_share_buckets(limiter: MemoryRateLimiter) -> None:
    mw, provider = RateLimitMiddleware(RateLimitOptions(), limiter), Provider()
    policy = {"rate_limit": "1/minute"}
    acme, globex = Principal("admin", tenant="acme"), Principal("admin", tenant="globex")
    assert await run(mw, make_call(policy, acme), provider, 2) == [True, False]
    assert await run(mw, make_call(policy, globex), provider, 1) == [True]


async def test_default_limit_and_turning_it_off(limiter: MemoryRateLimiter) -> None:
    mw = RateLimitMiddleware(RateLimitOptions(default="1/minute", scope="global"), limiter)
    provider = Provider()
    assert await run(mw, make_call({}), provider, 2) == [True, False]
    for off in ("off", None, False, []):
        assert await run(mw, make_call({"rate_limit": off}), provider, 2) == [True, True]
    # resources are limited too, in their own bucket
    assert await run(mw, make_call({}, kind="resource"), provider, 2) == [True, False]


async def test_no_limit_means_no_backend_call() -> None:
    class Exploding(MemoryRateLimiter):
        async def hit_all(self, *args: Any, **kwargs: Any) -> Any:
            raise AssertionError("the backend must not be asked")

    provider = Provider()
    await RateLimitMiddleware(RateLimitOptions(), Exploding())(make_call({}), provider)
    assert len(provider.calls) == 1


async def test_malformed_policy_is_a_config_error(limiter: MemoryRateLimiter) -> None:
    mw, provider = RateLimitMiddleware(RateLimitOptions(), limiter), Provider()
    with pytest.raises(ConfigError, match="rate_limit"):
        await mw(make_call({"rate_limit": "lots"}), provider)
    with pytest.raises(ConfigError, match="rate_limit_scope"):
        await mw(make_call({"rate_limit": "1/s", "rate_limit_scope": "tenant"}), provider)
    with pytest.raises(ConfigError, match="default"):
        RateLimitOptions(default="1/fortnight")
    assert provider.calls == []


async def test_refusal_leaves_the_pipeline_as_a_rate_limited_tool_error(limiter: MemoryRateLimiter) -> None:
    pipeline = Pipeline()
    pipeline.set("errors", ErrorsMiddleware())
    pipeline.set("rate_limit", RateLimitMiddleware(RateLimitOptions(default="1/minute"), limiter))
    chain = pipeline.compose(Provider())
    assert not (await chain(make_call({}))).is_error
    refused = await chain(make_call({}))
    assert isinstance(refused, CallToolResult)
    assert refused.is_error
    error = error_of(refused)
    assert (error["code"], error["retryable"], error["retry_after_ms"]) == ("rate_limited", True, 60_000)


def unreachable_limiter() -> RedisRateLimiter:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return RedisRateLimiter(connect_redis(f"redis://127.0.0.1:{port}/0", timeout=1.0))


async def test_unreachable_backend_fails_closed_by_default() -> None:
    backend, provider = unreachable_limiter(), Provider()
    try:
        with pytest.raises(DependencyUnavailable) as info:
            await RateLimitMiddleware(RateLimitOptions(default="5/s"), backend)(make_call({}), provider)
    finally:
        await backend._client.aclose()
    assert info.value.code == "dependency_unavailable"
    assert provider.calls == []


async def test_unreachable_backend_fails_open_when_configured(caplog: pytest.LogCaptureFixture) -> None:
    backend, provider = unreachable_limiter(), Provider()
    try:
        with caplog.at_level(logging.WARNING, logger="mcplane.rate_limit"):
            await RateLimitMiddleware(RateLimitOptions(default="5/s", fail_open=True), backend)(make_call({}), provider)
    finally:
        await backend._client.aclose()
    assert len(provider.calls) == 1
    assert "runs unlimited" in caplog.text
    assert "cid-1" in caplog.text


async def test_buckets_follow_the_tool_the_caller_and_the_policy_of_each_call(limiter: MemoryRateLimiter) -> None:
    """The middleware remembers each call's checks; a change in any input gives other buckets."""
    mw, provider = RateLimitMiddleware(RateLimitOptions(), limiter), Provider()
    base = make_call({"rate_limit": "2/minute"})
    assert await run(mw, base, provider, 3) == [True, True, False]
    tenant_alice = Principal("alice", tenant="acme")
    assert await run(mw, make_call({"rate_limit": "2/minute"}, tenant_alice), provider, 1) == [True]
    assert await run(mw, make_call({"rate_limit": "2/minute"}, kind="prompt"), provider, 1) == [True]
    other_tool = Call("tool", "fetch", {}, base.context, base.policy)
    assert await run(mw, other_tool, provider, 1) == [True]
    assert await run(mw, make_call({"rate_limit": "5/minute"}), provider, 1) == [True]  # its own limit key
    assert await run(mw, make_call({"rate_limit": "off"}), provider, 4) == [True] * 4
    globally = make_call({"rate_limit": "2/minute", "rate_limit_scope": "global"})
    assert await run(mw, globally, provider, 1) == [True]
    assert await run(mw, make_call({"rate_limit": "2/minute"}), provider, 1) == [False]  # still alice's full bucket


async def test_a_policy_value_that_does_not_hash_is_still_enforced(limiter: MemoryRateLimiter) -> None:
    mw, provider = RateLimitMiddleware(RateLimitOptions(), limiter), Provider()
    call = make_call({})
    unhashable = Call(call.kind, call.name, call.arguments, call.context, ToolPolicy(rate_limit=["2/minute"]))  # pyright: ignore[reportArgumentType]
    assert await run(mw, unhashable, provider, 3) == [True, True, False]


async def test_a_leased_limiter_refuses_like_the_exact_one(clock: ManualClock) -> None:
    """With ``rate_limit.lease`` the middleware sees the same refusals: scope, limits, and the
    ``retry_after_ms`` the exact limiter gives on the same bucket."""
    from mcplane.backends.lease import LeasedRateLimiter

    policy = {"rate_limit": "64/minute", "rate_limit_scope": "both"}
    store = MemoryRateLimiter(clock=clock)
    exact, leased, provider = (
        RateLimitMiddleware(RateLimitOptions(), store),
        RateLimitMiddleware(RateLimitOptions(), LeasedRateLimiter(store, clock=clock)),
        Provider(),
    )
    admitted = await run(leased, make_call(policy, BOB), provider, 40) + await run(
        leased, make_call(policy), provider, 40
    )
    assert 64 - 2 * 4 <= sum(admitted) <= 64  # the global bucket; two callers' leases may hold back 4 each
    refusals: list[tuple[int | None, Any]] = []
    for mw in (leased, exact):
        with pytest.raises(RateLimited) as info:
            await mw(make_call(policy), provider)
        refusals.append((info.value.retry_after_ms, info.value.details))
    assert refusals[0] == refusals[1]
    assert refusals[0][1] == {"scope": "global", "limits": ["64/60s"]}


async def test_a_held_leased_call_is_spent_without_a_hit(clock: ManualClock) -> None:
    """A call the lease already holds is admitted by ``take_held`` alone (no ``hit_all``, no
    decision built); the calls admitted are the same as through ``hit_all``."""
    from mcplane.backends.lease import LeasedRateLimiter

    class Hits(LeasedRateLimiter):
        hits = 0

        async def hit_all(self, checks: Any, *, cost: int = 1) -> Any:
            self.hits += 1
            return await super().hit_all(checks, cost=cost)

    policy = {"rate_limit": "6400/minute"}
    limiter = Hits(MemoryRateLimiter(clock=clock), clock=clock)
    mw, provider = RateLimitMiddleware(RateLimitOptions(), limiter), Provider()
    assert await run(mw, make_call(policy), provider, 300) == [True] * 300
    assert limiter.hits < 30  # about one per lease (sizes 2, 4, ... 64), not one per call
    exact = RateLimitMiddleware(RateLimitOptions(), MemoryRateLimiter(clock=clock))
    assert await run(exact, make_call(policy), Provider(), 300) == [True] * 300
