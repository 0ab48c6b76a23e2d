"""One registry of backends: for each concern, the config's backend names and what each one builds.

A concern (cache, rate limit, budget, state, breaker state, audit sink) is a
:class:`Concern` typed by its Protocol; its factories map the names its config key accepts
(``cache.backend: redis``, ``audit.sink: postgres``) to a function building that
implementation. Layers ask the registry (:meth:`Concern.build`) instead of comparing strings,
so adding an implementation is one entry here, and a name nobody registered is a
:class:`~mcplane.errors.ConfigError` naming the key, never a silent memory fallback.

Redis is connected on the first factory that asks for it (:attr:`Opening.redis`) and shared by
every layer; the Redis modules are imported only then, so memory works without ``redis``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from mcplane.audit.sink import AuditSink
from mcplane.errors import ConfigError

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from mcplane.audit import CheckpointOptions
    from mcplane.backends.budget import BudgetStore
    from mcplane.backends.cache import Cache
    from mcplane.backends.rate_limit import RateLimiter
    from mcplane.backends.state import StateStore
    from mcplane.config import PlaneConfig
    from mcplane.gateway.breaker_store import BreakerStore

__all__ = [
    "AUDIT_SINK",
    "BREAKER",
    "BUDGET",
    "CACHE",
    "RATE_LIMIT",
    "REGISTRY",
    "STATE",
    "CheckedAuditSink",
    "Concern",
    "Opening",
]

T_co = TypeVar("T_co", covariant=True)


@dataclass(frozen=True)
class Opening:
    """What a factory builds from: the plane's config and its shared Redis client (connected on first use)."""

    config: PlaneConfig
    redis: Callable[[], Redis]


@dataclass(frozen=True)
class Concern(Generic[T_co]):
    """One concern's backends: ``key`` is the config key naming one, ``factories`` build them by name."""

    key: str
    factories: Mapping[str, Callable[[Opening], T_co]]

    def build(self, name: str, opening: Opening) -> T_co:
        factory = self.factories.get(name)
        if factory is None:
            known = ", ".join(sorted(self.factories))
            raise ConfigError(f"{self.key}: unknown backend {name!r} (known: {known})")
        return factory(opening)


class CheckedAuditSink(AuditSink, Protocol):
    """An audit sink that checks its chain at start and says where its generated signing key lives."""

    def verify_at_start(self) -> str | None: ...

    @property
    def generated_key(self) -> bool: ...

    @property
    def key_location(self) -> str: ...


# ---------------------------------------------------------------- cache
def _memory_cache(opening: Opening) -> Cache:
    from mcplane.backends.cache import MemoryCache

    section = opening.config.cache
    return MemoryCache(max_entries=section.max_entries if section is not None else 10_000)


def _redis_cache(opening: Opening) -> Cache:
    from mcplane.backends.redis import RedisCache

    return RedisCache(opening.redis())


# ---------------------------------------------------------------- rate limit
def _memory_rate_limiter(opening: Opening) -> RateLimiter:
    from mcplane.backends.rate_limit import MemoryRateLimiter

    return MemoryRateLimiter()


def _redis_rate_limiter(opening: Opening) -> RateLimiter:
    from mcplane.backends.redis import RedisRateLimiter

    limiter = RedisRateLimiter(opening.redis())
    section = opening.config.rate_limit
    if section is None or section.lease is None:
        return limiter
    from mcplane.backends.lease import LeasedRateLimiter, LeaseOptions

    return LeasedRateLimiter(limiter, LeaseOptions(max=section.lease.max, ttl=section.lease.ttl))


# ---------------------------------------------------------------- budget
def _memory_budget(opening: Opening) -> BudgetStore:
    from mcplane.backends.budget import MemoryBudgetStore

    return MemoryBudgetStore()


def _redis_budget(opening: Opening) -> BudgetStore:
    from mcplane.backends.redis import RedisBudgetStore

    return RedisBudgetStore(opening.redis())


# ---------------------------------------------------------------- state
def _memory_state(opening: Opening) -> StateStore:
    from mcplane.backends.state import MemoryStateStore

    return MemoryStateStore()


def _redis_state(opening: Opening) -> StateStore:
    from mcplane.backends.state import RedisStateStore

    return RedisStateStore(opening.redis())


# ---------------------------------------------------------------- breaker state (gateway)
def _memory_breaker(opening: Opening) -> BreakerStore:
    from mcplane.gateway.breaker_store import MemoryBreakerStore

    return MemoryBreakerStore()


def _redis_breaker(opening: Opening) -> BreakerStore:
    from mcplane.gateway.breaker_store import RedisBreakerStore

    return RedisBreakerStore(opening.redis())


# ---------------------------------------------------------------- audit sink
def _file_sink(opening: Opening) -> CheckedAuditSink:
    from mcplane.audit import JsonlSink

    section = opening.config.audit
    assert section is not None  # only an audit section names a sink
    return JsonlSink(
        section.path,
        fsync=section.fsync,
        rotate_bytes=section.rotate_bytes,
        rotate_interval=section.rotate_interval,
        checkpoints=_checkpoints(opening, section.checkpoint_path),
    )


def _postgres_sink(opening: Opening) -> CheckedAuditSink:
    from mcplane.audit import PostgresSink

    section = opening.config.audit
    assert section is not None
    assert section.dsn is not None  # checked when the config was validated
    return PostgresSink(section.dsn, table=section.table, checkpoints=_checkpoints(opening, section.checkpoint_table))


def _checkpoints(opening: Opening, location: str | None) -> CheckpointOptions:
    from mcplane.audit import CheckpointOptions

    section = opening.config.audit
    assert section is not None
    return CheckpointOptions(
        key=section.checkpoint_key,
        trusted_keys=tuple(section.checkpoint_public_keys),
        every=section.checkpoint_every,
        interval=section.checkpoint_interval,
        location=location,
    )


CACHE: Concern[Cache] = Concern("cache.backend", {"memory": _memory_cache, "redis": _redis_cache})
RATE_LIMIT: Concern[RateLimiter] = Concern(
    "rate_limit.backend", {"memory": _memory_rate_limiter, "redis": _redis_rate_limiter}
)
BUDGET: Concern[BudgetStore] = Concern("budget.backend", {"memory": _memory_budget, "redis": _redis_budget})
STATE: Concern[StateStore] = Concern("state.backend", {"memory": _memory_state, "redis": _redis_state})
BREAKER: Concern[BreakerStore] = Concern("gateway.shared_state", {"memory": _memory_breaker, "redis": _redis_breaker})
AUDIT_SINK: Concern[CheckedAuditSink] = Concern("audit.sink", {"file": _file_sink, "postgres": _postgres_sink})

REGISTRY: Mapping[str, Concern[object]] = {
    "cache": CACHE,
    "rate_limit": RATE_LIMIT,
    "budget": BUDGET,
    "state": STATE,
    "breaker": BREAKER,
    "audit": AUDIT_SINK,
}
"""Every concern by name."""
