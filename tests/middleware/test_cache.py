"""The cache slot, driven directly with fake calls, a memory cache and a manual clock."""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping
from typing import Any

import pytest
from mcp_types import CallToolResult, InputRequiredResult, TextContent, ToolAnnotations

from mcplane.backends import EncryptedCache, ManualClock, MemoryCache
from mcplane.backends.redis import RedisCache, connect_redis
from mcplane.context import Context, Principal
from mcplane.errors import DependencyUnavailable
from mcplane.middleware.cache import CacheMiddleware, CacheOptions, cache_key
from mcplane.pipeline import Call, CallKind
from mcplane.tool_policy import ToolPolicy, ToolSource

ALICE, BOB = Principal("alice"), Principal("bob")
READ_ONLY = {"annotations": ToolAnnotations(read_only_hint=True)}


class Provider:
    """The tool: answers ``n=<calls so far>`` so a replayed result is easy to tell from a fresh one."""

    def __init__(self, result: Any = None) -> None:
        self.calls = 0
        self.result = result

    async def __call__(self, call: Call) -> Any:
        self.calls += 1
        if self.result is not None:
            return self.result
        return CallToolResult(
            content=[TextContent(type="text", text=f"n={self.calls}")], structured_content={"n": self.calls}
        )


def make_call(
    policy: Mapping[str, Any],
    arguments: Mapping[str, Any] | None = None,
    principal: Principal = ALICE,
    *,
    kind: CallKind = "tool",
) -> Call:
    args = {"q": "x"} if arguments is None else arguments
    declared = dict(policy)
    source = ToolSource(annotations=declared.pop("annotations", None))  # what the tool is, not policy
    context = Context(principal=principal, correlation_id="cid-1")
    return Call(kind, "search", args, context, ToolPolicy.from_mapping(declared), source)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def cache(clock: ManualClock) -> MemoryCache:
    return MemoryCache(clock=clock)


def texts(results: list[Any]) -> list[str]:
    out: list[str] = []
    for result in results:
        assert isinstance(result, CallToolResult)
        block = result.content[0]
        assert isinstance(block, TextContent)
        out.append(block.text)
    return out


async def test_read_only_tools_are_cached_when_enabled(cache: MemoryCache) -> None:
    mw, provider = CacheMiddleware(CacheOptions(enabled=True), cache), Provider()
    first, second = [await mw(make_call(READ_ONLY), provider) for _ in range(2)]
    assert provider.calls == 1
    assert second == first
    assert second.structured_content == {"n": 1}
    assert (cache.stats.hits, cache.stats.misses, cache.stats.sets) == (1, 1, 1)


async def test_read_only_tools_are_not_cached_when_disabled(cache: MemoryCache) -> None:
    mw, provider = CacheMiddleware(CacheOptions(enabled=False), cache), Provider()
    assert texts([await mw(make_call(READ_ONLY), provider) for _ in range(2)]) == ["n=1", "n=2"]
    assert cache.stats.snapshot()["sets"] == 0


async def test_declared_ttl_caches_and_expires(cache: MemoryCache, clock: ManualClock) -> None:
    mw, provider = CacheMiddleware(CacheOptions(), cache), Provider()
    policy = {"cache_ttl": "30s"}
    assert texts([await mw(make_call(policy), provider) for _ in range(2)]) == ["n=1", "n=1"]
    clock.advance(30)
    assert texts([await mw(make_call(policy), provider)]) == ["n=2"]


async def test_zero_ttl_turns_caching_off(cache: MemoryCache) -> None:
    mw, provider = CacheMiddleware(CacheOptions(enabled=True), cache), Provider()
    policy = {**READ_ONLY, "cache_ttl": 0}
    assert texts([await mw(make_call(policy), provider) for _ in range(2)]) == ["n=1", "n=2"]


async def test_key_is_canonical_json_of_the_arguments(cache: MemoryCache) -> None:
    mw, provider = CacheMiddleware(CacheOptions(), cache), Provider()
    policy = {"cache_ttl": 60}
    a = await mw(make_call(policy, {"a": 1, "b": {"y": 2, "x": [1, 2]}}), provider)
    b = await mw(make_call(policy, {"b": {"x": [1, 2], "y": 2}, "a": 1}), provider)
    c = await mw(make_call(policy, {"a": 1, "b": {"x": [2, 1], "y": 2}}), provider)
    assert texts([a, b, c]) == ["n=1", "n=1", "n=2"]


async def test_private_scope_separates_callers_and_public_shares(cache: MemoryCache) -> None:
    mw, provider = CacheMiddleware(CacheOptions(), cache), Provider()
    private = {"cache_ttl": 60}
    acme_alice = Principal("alice", tenant="acme")
    results = [await mw(make_call(private, principal=who), provider) for who in (ALICE, BOB, acme_alice, ALICE)]
    assert texts(results) == ["n=1", "n=2", "n=3", "n=1"]
    public = {"cache_ttl": 60, "cache_scope": "public"}
    shared = [await mw(make_call(public, {"q": "y"}, principal=who), provider) for who in (ALICE, BOB)]
    assert texts(shared) == ["n=4", "n=4"]


async def test_errors_and_input_requests_are_never_cached(cache: MemoryCache) -> None:
    policy = {"cache_ttl": 60}
    failing = Provider(CallToolResult(content=[TextContent(type="text", text="boom")], is_error=True))
    mw = CacheMiddleware(CacheOptions(), cache)
    for _ in range(2):
        await mw(make_call(policy), failing)
    asking = Provider(InputRequiredResult(request_state="round-1"))
    for _ in range(2):
        assert isinstance(await mw(make_call(policy, {"q": "ask"}), asking), InputRequiredResult)
    assert (failing.calls, asking.calls, cache.stats.sets, len(cache)) == (2, 2, 0, 0)


async def test_exceptions_pass_through_uncached(cache: MemoryCache) -> None:
    calls = 0

    async def crashing(call: Call) -> Any:
        nonlocal calls
        calls += 1
        raise RuntimeError("tool crashed")

    mw = CacheMiddleware(CacheOptions(), cache)
    for _ in range(2):
        with pytest.raises(RuntimeError):
            await mw(make_call({"cache_ttl": 60}), crashing)
    assert calls == 2


async def test_only_tool_calls_are_cached(cache: MemoryCache) -> None:
    mw, provider = CacheMiddleware(CacheOptions(enabled=True), cache), Provider()
    for kind in ("resource", "prompt", "resource"):
        await mw(make_call({"cache_ttl": 60, **READ_ONLY}, kind=kind), provider)
    assert provider.calls == 3


async def test_large_results_and_non_json_arguments_are_not_stored(cache: MemoryCache) -> None:
    big = CallToolResult(content=[TextContent(type="text", text="x" * 2000)])
    mw = CacheMiddleware(CacheOptions(max_bytes=1000), cache)
    large = Provider(big)
    for _ in range(2):
        await mw(make_call({"cache_ttl": 60}), large)
    odd, provider = {"when": object()}, Provider()
    for _ in range(2):
        await mw(make_call({"cache_ttl": 60}, odd), provider)
    assert (large.calls, provider.calls, len(cache)) == (2, 2, 0)


def test_keys_hide_argument_values() -> None:
    key = cache_key(make_call({"cache_ttl": 60}, {"password": "hunter2"}))
    assert key is not None
    assert key.startswith("tool:search:")
    assert "hunter2" not in key


async def test_a_corrupt_entry_is_a_miss_and_is_replaced(cache: MemoryCache) -> None:
    mw, provider = CacheMiddleware(CacheOptions(), cache), Provider()
    call = make_call({"cache_ttl": 60})
    key = cache_key(call)
    assert key is not None
    await cache.set(key, b'{"not": "a result"', 60)
    assert texts([await mw(call, provider), await mw(call, provider)]) == ["n=1", "n=1"]


async def test_works_over_an_encrypted_cache(cache: MemoryCache) -> None:
    from cryptography.fernet import Fernet

    encrypted = EncryptedCache(cache, [Fernet.generate_key()])
    mw, provider = CacheMiddleware(CacheOptions(), encrypted), Provider()
    assert texts([await mw(make_call({"cache_ttl": 60}), provider) for _ in range(2)]) == ["n=1", "n=1"]
    assert encrypted.stats.hits == 1


def unreachable_cache() -> RedisCache:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return RedisCache(connect_redis(f"redis://127.0.0.1:{port}/0", timeout=1.0))


async def test_unreachable_backend_is_a_miss_by_default(caplog: pytest.LogCaptureFixture) -> None:
    backend, provider = unreachable_cache(), Provider()
    mw = CacheMiddleware(CacheOptions(), backend)
    try:
        with caplog.at_level(logging.WARNING, logger="mcplane.cache"):
            assert texts([await mw(make_call({"cache_ttl": 60}), provider) for _ in range(2)]) == ["n=1", "n=2"]
    finally:
        await backend._client.aclose()
    assert "running uncached" in caplog.text
    assert backend.stats.errors == 2


async def test_unreachable_backend_fails_closed_when_configured() -> None:
    backend, provider = unreachable_cache(), Provider()
    try:
        with pytest.raises(DependencyUnavailable):
            await CacheMiddleware(CacheOptions(fail_open=False), backend)(make_call({"cache_ttl": 60}), provider)
    finally:
        await backend._client.aclose()
    assert provider.calls == 0


async def test_a_failed_store_never_fails_the_call(cache: MemoryCache) -> None:
    class WriteFails(MemoryCache):
        async def set(self, key: str, value: bytes, ttl: float) -> None:
            raise DependencyUnavailable("the cache is unavailable")

    provider = Provider()
    mw = CacheMiddleware(CacheOptions(fail_open=False), WriteFails())
    assert texts([await mw(make_call({"cache_ttl": 60}), provider)]) == ["n=1"]
