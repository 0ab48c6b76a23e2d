"""The Redis backends against real servers: outages, recovery, two processes, configuration checks."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import Process
from redis.asyncio import Redis

from mcplane.backends import parse_limit
from mcplane.backends.keys import hash_tag
from mcplane.backends.redis import RedisBudgetStore, RedisCache, RedisRateLimiter, connect_redis
from mcplane.backends.state import RedisStateStore
from mcplane.errors import ConfigError, DependencyUnavailable

from .harness import PrivateRedis, free_port

WORKER = Path(__file__).with_name("rate_limit_worker.py")
LIMIT = parse_limit("10/minute")


async def _every_verb(client: Redis, prefix: str = "mcplane-test:") -> None:
    """One call of each backend; raises what the first failing one raises."""
    await RedisRateLimiter(client, prefix=prefix).hit("k", LIMIT)
    await RedisBudgetStore(client, prefix=prefix).try_spend("k", 1, 10, 60)
    cache = RedisCache(client, prefix=prefix)
    await cache.set("k", b"v", 60)
    await cache.get("k")


@pytest.mark.parametrize(
    "verb", ["rate_limit", "budget", "cache_get", "cache_set", "cache_delete", "state", "state_cas"]
)
@pytest.mark.parametrize("scheme", ["redis", "redis+sentinel", "redis+cluster"])
async def test_a_closed_port_raises_dependency_unavailable_without_secrets(verb: str, scheme: str) -> None:
    path = "/mymaster/0" if scheme == "redis+sentinel" else "/0"
    client = connect_redis(f"{scheme}://:hunter2@127.0.0.1:{free_port()}{path}", timeout=1.0)
    cache = RedisCache(client)
    calls: dict[str, Any] = {
        "rate_limit": lambda: RedisRateLimiter(client).hit("k", LIMIT),
        "budget": lambda: RedisBudgetStore(client).try_spend("k", 1, 10, 60),
        "cache_get": lambda: cache.get("k"),
        "cache_set": lambda: cache.set("k", b"v", 60),
        "cache_delete": lambda: cache.delete("k"),
        "state": lambda: RedisStateStore(client).get("{c}:k"),
        "state_cas": lambda: RedisStateStore(client).compare_and_set("{c}:k", None, b"1", 60),
    }
    try:
        with pytest.raises(DependencyUnavailable) as info:
            await calls[verb]()
    finally:
        await client.aclose()
    error = info.value
    assert error.code == "dependency_unavailable"
    assert error.retryable
    assert error.message.endswith("is unavailable")
    wire = json.dumps(error.to_dict("cid"))
    assert "hunter2" not in wire
    assert "127.0.0.1" not in wire
    if verb.startswith("cache_") and verb != "cache_delete":
        assert cache.stats.errors == 1


async def test_service_recovers_on_its_own_after_a_redis_restart(private_redis: PrivateRedis) -> None:
    await private_redis.start()
    client = connect_redis(private_redis.url, timeout=1.0)
    try:
        await _every_verb(client)
        private_redis.stop()
        for _ in range(2):  # every call fails fast and clearly while Redis is down
            with anyio.fail_after(5), pytest.raises(DependencyUnavailable) as info:
                await _every_verb(client)
            assert info.value.code == "dependency_unavailable"
        await private_redis.start()
        with anyio.fail_after(10):  # the same client, no restart of ours: it reconnects by itself
            while True:
                try:
                    await _every_verb(client)
                    break
                except DependencyUnavailable:
                    await anyio.sleep(0.05)
        cache = RedisCache(client, prefix="after:")
        await cache.set("k", b"back", 60)
        assert await cache.get("k") == b"back"
    finally:
        await client.aclose()


async def _read_line(proc: Process) -> str:
    assert proc.stdout is not None
    data = b""
    while not data.endswith(b"\n"):
        data += await proc.stdout.receive()
    return data.decode()


async def test_two_processes_share_one_limit(redis_url: str, redis_client: Redis, prefix: str) -> None:
    """Two real processes hammer one key: together they get the limit once, never twice."""
    limit, attempts = "50/hour", 1000  # one call earned back per 72 s: nothing refills during the test
    command = [sys.executable, str(WORKER), redis_url, prefix, "shared", limit, str(attempts), "16"]
    procs = [await anyio.open_process(command) for _ in range(2)]
    try:
        with anyio.fail_after(30):
            for proc in procs:
                assert (await _read_line(proc)).strip() == "ready"
            for proc in procs:
                assert proc.stdin is not None
                await proc.stdin.send(b"go\n")
            reports = [json.loads(await _read_line(proc)) for proc in procs]
            for proc in procs:
                assert await proc.wait() == 0
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    allowed = [report["allowed"] for report in reports]
    print(f"two processes, limit {limit}, {attempts} attempts each: allowed {allowed}, total {sum(allowed)}")
    assert sum(allowed) == 50
    assert sum(report["refused"] for report in reports) == 2 * attempts - 50
    # the two really ran at the same time
    assert max(r["started"] for r in reports) < min(r["ended"] for r in reports)


async def test_real_redis_expires_cache_entries(redis_client: Redis, prefix: str) -> None:
    cache = RedisCache(redis_client, prefix=prefix)
    await cache.set("short", b"v", 0.05)
    assert 0 < await redis_client.pttl(f"{prefix}cache:{{short}}") <= 50
    with anyio.fail_after(5):  # poll until Redis itself drops the entry
        while True:
            if await cache.get("short") is None:
                break
            await anyio.sleep(0.01)
    assert await redis_client.exists(f"{prefix}cache:{{short}}") == 0


async def test_keys_are_namespaced_and_hash_tagged(redis_client: Redis, prefix: str) -> None:
    await RedisRateLimiter(redis_client, prefix=prefix).hit_all([("{tool:x}:alice", LIMIT), ("{tool:x}:all", LIMIT)])
    await RedisBudgetStore(redis_client, prefix=prefix).try_spend("alice", 1, 10, 60)
    await RedisCache(redis_client, prefix=prefix).set("tool:x:abc", b"v", 60)
    await RedisStateStore(redis_client, prefix=prefix).set("{conv}:step", b"1", 60)
    keys = sorted([key.decode() async for key in redis_client.scan_iter(match=prefix + "*")])
    assert all(hash_tag(key) for key in keys)  # every key of every layer has a hash tag
    assert keys == [
        f"{prefix}budget:{{alice}}",
        f"{prefix}cache:{{tool:x:abc}}",
        f"{prefix}rl:{{tool:x}}:alice:10/60000ms",
        f"{prefix}rl:{{tool:x}}:all:10/60000ms",
        f"{prefix}state:{{conv}}:step",
    ]


async def test_configuration_mistakes_are_refused() -> None:
    text_client = Redis.from_url("redis://127.0.0.1:6379/0", decode_responses=True)
    try:
        with pytest.raises(ConfigError, match="decode_responses"):
            RedisCache(text_client)
    finally:
        await text_client.aclose()
    client = connect_redis("redis://127.0.0.1:6379/0")
    try:
        with pytest.raises(ValueError, match="braces"):
            RedisRateLimiter(client, prefix="app{1}:")
    finally:
        await client.aclose()
