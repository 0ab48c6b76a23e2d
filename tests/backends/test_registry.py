"""The backend registry: every name the config accepts builds its concern's Protocol implementation."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
from pydantic import BaseModel
from redis.asyncio import Redis

from mcplane.audit import JsonlSink, PostgresSink
from mcplane.audit.sink import AuditSink
from mcplane.backends import (
    BudgetStore,
    Cache,
    MemoryBudgetStore,
    MemoryCache,
    MemoryRateLimiter,
    MemoryStateStore,
    RateLimiter,
    StateStore,
)
from mcplane.backends.redis import RedisBudgetStore, RedisCache, RedisRateLimiter
from mcplane.backends.registry import AUDIT_SINK, BREAKER, BUDGET, CACHE, RATE_LIMIT, REGISTRY, STATE, Concern, Opening
from mcplane.backends.state import RedisStateStore
from mcplane.config import AuditSection, BudgetSection, CacheSection, PlaneConfig, RateLimitSection, StateSection
from mcplane.errors import ConfigError
from mcplane.gateway.breaker_store import BreakerStore, MemoryBreakerStore, RedisBreakerStore

# concern: (the config section whose field names the backend, that field, the Protocol, implementation by name)
SHARED: dict[str, tuple[type[BaseModel], str, type[object], dict[str, type[object]]]] = {
    "cache": (CacheSection, "backend", Cache, {"memory": MemoryCache, "redis": RedisCache}),
    "rate_limit": (RateLimitSection, "backend", RateLimiter, {"memory": MemoryRateLimiter, "redis": RedisRateLimiter}),
    "budget": (BudgetSection, "backend", BudgetStore, {"memory": MemoryBudgetStore, "redis": RedisBudgetStore}),
    "state": (StateSection, "backend", StateStore, {"memory": MemoryStateStore, "redis": RedisStateStore}),
}


def _accepted(section: type[BaseModel], name: str) -> set[str]:
    """The names the config's ``Literal`` accepts for ``section.name``."""
    return set(typing.get_args(section.model_fields[name].annotation))


def _members(protocol: type[object]) -> set[str]:
    return {name for name in vars(protocol) if not name.startswith("_")}


def _implements(built: object, protocol: type[object]) -> bool:
    return all(hasattr(built, member) for member in _members(protocol))


def _no_redis() -> Redis:
    raise AssertionError("a memory backend must not connect to Redis")


def test_the_registry_covers_every_concern_the_config_names() -> None:
    assert set(REGISTRY) == {*SHARED, "breaker", "audit"}
    for concern, (section, field, _, _) in SHARED.items():
        assert set(REGISTRY[concern].factories) == _accepted(section, field), concern
    assert set(AUDIT_SINK.factories) == _accepted(AuditSection, "sink")


@pytest.mark.parametrize("concern", sorted(SHARED))
def test_memory_builds_the_concerns_protocol_without_redis(concern: str) -> None:
    _, _, protocol, implementations = SHARED[concern]
    built = REGISTRY[concern].build("memory", Opening(PlaneConfig(), _no_redis))
    assert type(built) is implementations["memory"]
    assert _implements(built, protocol)


@pytest.mark.parametrize("concern", sorted(SHARED))
async def test_redis_builds_the_concerns_protocol_on_the_shared_client(concern: str, redis_client: Redis) -> None:
    _, _, protocol, implementations = SHARED[concern]
    asked: list[Redis] = []

    def redis() -> Redis:
        asked.append(redis_client)
        return redis_client

    built = REGISTRY[concern].build("redis", Opening(PlaneConfig(), redis))
    assert type(built) is implementations["redis"]
    assert _implements(built, protocol)
    assert asked == [redis_client]


async def test_a_redis_cache_from_the_registry_talks_to_redis(redis_client: Redis) -> None:
    cache = CACHE.build("redis", Opening(PlaneConfig(), lambda: redis_client))
    assert await cache.get("registry-test:never-set") is None
    assert cache.stats.misses == 1


async def test_breaker_state_builds_in_memory_and_on_redis(redis_client: Redis) -> None:
    memory = BREAKER.build("memory", Opening(PlaneConfig(), _no_redis))
    shared = BREAKER.build("redis", Opening(PlaneConfig(), lambda: redis_client))
    assert (type(memory), type(shared)) == (MemoryBreakerStore, RedisBreakerStore)
    assert _implements(memory, BreakerStore)
    assert _implements(shared, BreakerStore)


def test_the_audit_sinks_are_audit_sinks(tmp_path: Path) -> None:
    file = PlaneConfig.model_validate({"audit": {"path": str(tmp_path / "audit.jsonl")}})
    postgres = PlaneConfig.model_validate({"audit": {"sink": "postgres", "dsn": "postgresql://127.0.0.1/audit"}})
    sinks = [
        AUDIT_SINK.build("file", Opening(file, _no_redis)),
        AUDIT_SINK.build("postgres", Opening(postgres, _no_redis)),
    ]
    assert [type(sink) for sink in sinks] == [JsonlSink, PostgresSink]
    assert all(isinstance(sink, AuditSink) for sink in sinks)
    assert sinks[0].key_location == str(tmp_path / "audit.jsonl.checkpoints.key")
    assert sinks[1].key_location == "table mcplane_audit_checkpoints_key"


@pytest.mark.parametrize("concern", [CACHE, RATE_LIMIT, BUDGET, STATE])
def test_an_unknown_name_is_a_config_error_naming_the_key(concern: Concern[object]) -> None:
    with pytest.raises(ConfigError, match=rf"^{concern.key}: unknown backend 'memcached' \(known: memory, redis\)$"):
        concern.build("memcached", Opening(PlaneConfig(), _no_redis))
