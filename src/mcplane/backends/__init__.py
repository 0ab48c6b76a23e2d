"""Backends: one Protocol per shared state, with atomic verbs, each with a memory and a Redis implementation.

=================  ==========================  ========================  =====================
Protocol           verbs                       memory (one process)      Redis (any replicas)
=================  ==========================  ========================  =====================
``RateLimiter``    ``hit``, ``hit_all``        ``MemoryRateLimiter``     ``RedisRateLimiter``
``Cache``          ``get``, ``set``, ``delete``  ``MemoryCache``         ``RedisCache``
``BudgetStore``    ``try_spend(_all)``,        ``MemoryBudgetStore``     ``RedisBudgetStore``
                   ``charge``
``StateStore``     ``get``, ``set`` (if absent), ``MemoryStateStore``    ``RedisStateStore``
                   ``delete``, ``compare_and_set``,
                   ``incr``
=================  ==========================  ========================  =====================

Memory implementations take a ``clock`` (tests pass a :class:`ManualClock`); Redis ones read
the server's time. :class:`EncryptedCache` adds Fernet encryption at rest to any cache. The
Redis classes live in :mod:`mcplane.backends.redis` (``RedisStateStore`` in
:mod:`mcplane.backends.state`), imported only when used; :func:`~mcplane.backends.redis.connect_redis`
connects to one server, Sentinel or Cluster.
"""

from mcplane.backends.budget import BudgetDecision, BudgetStore, MemoryBudgetStore
from mcplane.backends.cache import Cache, CacheStats, EncryptedCache, MemoryCache
from mcplane.backends.clock import Clock, ManualClock
from mcplane.backends.rate_limit import Decision, Limit, MemoryRateLimiter, RateLimiter, parse_limit, parse_limits
from mcplane.backends.state import MemoryStateStore, State, StateStore

__all__ = [
    "BudgetDecision",
    "BudgetStore",
    "Cache",
    "CacheStats",
    "Clock",
    "Decision",
    "EncryptedCache",
    "Limit",
    "ManualClock",
    "MemoryBudgetStore",
    "MemoryCache",
    "MemoryRateLimiter",
    "MemoryStateStore",
    "RateLimiter",
    "State",
    "StateStore",
    "parse_limit",
    "parse_limits",
]
