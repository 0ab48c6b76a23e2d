"""Build the pipeline's layers and their backends from a :class:`~mcplane.config.PlaneConfig`.

A layer is installed only when something asks for it — a config section, or a tool whose policy
declares it (``rate_limit=``, ``cache_ttl=``, ``roles=``) — so a bare plane pays for nothing it
does not use. Backends are memory by default and Redis when a section says ``backend: redis``;
a Redis that is configured but down is never replaced by memory (no silent fallback): each layer
fails open or closed as its section says, and readiness reports it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mcplane.config import PlaneConfig
from mcplane.pipeline import Pipeline

if TYPE_CHECKING:
    from mcplane.auth import Authenticator
    from mcplane.backends.state import StateSpace
    from mcplane.observability import Observability

__all__ = ["Layers", "build_layers"]

logger = logging.getLogger("mcplane.layers")

HealthCheck = Callable[[], Awaitable[tuple[bool, str]]]
Route = Callable[[Any, Any, Any], Awaitable[None]]
"""An ASGI callable ``(scope, receive, send)`` for one HTTP path."""


@dataclass
class Layers:
    """What :func:`build_layers` made: the authenticator for the transports, checks, and cleanups."""

    authenticator: Authenticator | None = None
    observability: Observability | None = None
    """Metrics, call logs and tracing (the ``observability`` section); set once the plane started."""
    health_checks: dict[str, HealthCheck] = field(default_factory=dict)
    closers: list[Callable[[], Awaitable[Any]]] = field(default_factory=list)
    state: StateSpace | None = None
    """What ``ctx.state`` is bound to (the ``state`` section); set once the plane started."""
    routes: dict[str, Route] = field(default_factory=dict)
    """Extra HTTP endpoints by exact path (the gateway's ``/integrity/...``); each authenticates itself."""

    async def aclose(self) -> None:
        for close in reversed(self.closers):
            try:
                await close()
            except Exception:  # one failing close must not keep the others from running
                logger.exception("closing a layer failed")


def _wants(policies: Mapping[str, Mapping[str, Any]], key: str) -> bool:
    return any(policy.get(key) not in (None, False) for policy in policies.values())


def build_layers(config: PlaneConfig, pipeline: Pipeline, policies: Mapping[str, Mapping[str, Any]]) -> Layers:
    """Fill the pipeline's slots for ``config``; ``policies`` are the merged per-tool policies."""
    layers = Layers()
    redis_client: Any = None

    def redis() -> Any:
        nonlocal redis_client
        if redis_client is None:
            from mcplane.backends.redis import RedisOptions, connect_redis

            assert config.redis_url is not None  # checked when the config was validated
            options = RedisOptions(**config.redis.model_dump())
            redis_client = connect_redis(config.redis_url.get(), options=options)
            layers.closers.append(redis_client.aclose)

            async def ping() -> tuple[bool, str]:
                try:
                    await redis_client.ping()
                except Exception as exc:  # any failure means "not ready"; the reason is logged, not shown
                    logger.warning("redis ping failed: %s", type(exc).__name__)
                    return False, "redis unreachable"
                return True, "ok"

            layers.health_checks["redis"] = ping
        return redis_client

    secrets = config.secrets
    if secrets is not None and secrets.refresh_interval is not None and secrets._tracked:

        async def refresh() -> tuple[bool, str]:
            # Readiness probes arrive every few seconds: they keep secret references fresh.
            await secrets.refresh_if_due()
            return True, "ok"

        layers.health_checks["secrets"] = refresh

    _auth(config, pipeline, policies, layers)
    _authorize(config, pipeline, policies)
    _rate_limit(config, pipeline, policies, redis)
    _cache(config, pipeline, policies, redis)
    _budget(config, pipeline, redis)
    _guards(config, pipeline)
    layers.state = _state(config, redis)
    _audit(config, pipeline, layers)
    _observability(config, pipeline, layers)  # last: it instruments the layers above
    return layers


def _auth(config: PlaneConfig, pipeline: Pipeline, policies: Mapping[str, Mapping[str, Any]], layers: Layers) -> None:
    from mcplane.auth import AuthenticateMiddleware, Authenticator

    if config.auth is not None:
        layers.authenticator = Authenticator(config.auth)
        pipeline.set("authenticate", AuthenticateMiddleware(required=config.auth.required))


def _authorize(config: PlaneConfig, pipeline: Pipeline, policies: Mapping[str, Mapping[str, Any]]) -> None:
    """Roles/scopes by glob and CEL rules (``authorization``), or the roles/scopes tools declare."""
    if config.authorization is None and not _wants(policies, "roles") and not _wants(policies, "scopes"):
        return
    from mcplane.audit.forwarded import TrustedProxies
    from mcplane.auth import AccessPolicy
    from mcplane.middleware.authorize import AuthorizeMiddleware
    from mcplane.middleware.validate import ArgumentLimits
    from mcplane.observability.metrics import default_metrics

    limits = config.limits
    pipeline.set(
        "authorize",
        AuthorizeMiddleware(
            config.authorization or AccessPolicy(),
            limits=ArgumentLimits(max_nodes=limits.max_argument_nodes, max_depth=limits.max_argument_depth),
            proxies=TrustedProxies(tuple(config.http.trusted_proxies)),
            metrics=default_metrics() if config.observability.metrics.enabled else None,
        ),
    )


def _rate_limit(
    config: PlaneConfig, pipeline: Pipeline, policies: Mapping[str, Mapping[str, Any]], redis: Callable[[], Any]
) -> None:
    section = config.rate_limit
    if section is None and not _wants(policies, "rate_limit"):
        return
    from mcplane.backends import MemoryRateLimiter
    from mcplane.backends.redis import RedisRateLimiter
    from mcplane.middleware.rate_limit import RateLimitMiddleware, RateLimitOptions

    if section is not None and section.backend == "redis":
        limiter: Any = RedisRateLimiter(redis())
    else:
        limiter = MemoryRateLimiter()
    options = (
        RateLimitOptions(default=section.default, scope=section.scope, fail_open=section.fail_open)
        if section is not None
        else RateLimitOptions()
    )
    pipeline.set("rate_limit", RateLimitMiddleware(options, limiter))


def _cache(
    config: PlaneConfig, pipeline: Pipeline, policies: Mapping[str, Mapping[str, Any]], redis: Callable[[], Any]
) -> None:
    section = config.cache
    if (section is None or not section.enabled) and not _wants(policies, "cache_ttl"):
        return
    from mcplane.backends import EncryptedCache, MemoryCache
    from mcplane.backends.redis import RedisCache
    from mcplane.middleware.cache import CacheMiddleware, CacheOptions

    if section is not None and section.backend == "redis":
        cache: Any = RedisCache(redis())
    else:
        cache = MemoryCache(max_entries=section.max_entries if section is not None else 10_000)
    if section is not None and section.encryption_keys:
        cache = EncryptedCache(cache, [key.get() for key in section.encryption_keys])
    options = (
        CacheOptions(
            enabled=section.enabled,
            default_ttl=section.default_ttl,
            max_bytes=section.max_bytes,
            fail_open=section.fail_open,
        )
        if section is not None
        else CacheOptions()
    )
    pipeline.set("cache", CacheMiddleware(options, cache))


def _budget(config: PlaneConfig, pipeline: Pipeline, redis: Callable[[], Any]) -> None:
    section = config.budget
    if section is None:
        return
    from mcplane.backends import MemoryBudgetStore
    from mcplane.backends.redis import RedisBudgetStore
    from mcplane.middleware.budget import BudgetMiddleware, BudgetOptions

    store: Any = RedisBudgetStore(redis()) if section.backend == "redis" else MemoryBudgetStore()
    options = BudgetOptions(
        limit=section.limit,
        window=section.window,
        session_limit=section.session_limit,
        charge_results=section.charge_results,
        fail_open=section.fail_open,
    )
    pipeline.set("budget", BudgetMiddleware(options, store))


def _guards(config: PlaneConfig, pipeline: Pipeline) -> None:
    """Output guards (the ``guards`` section): scan tool results, mask or refuse what they find."""
    section = config.guards
    if section is None or not section.tools:
        return
    from mcplane.middleware.guard import GuardMiddleware
    from mcplane.observability.metrics import default_metrics

    secrets = config.secrets

    def secret_values() -> Any:
        # The resolver's pattern of every value it ever resolved (old ones too, after a refresh).
        return secrets._pattern if secrets is not None else None  # pyright: ignore[reportPrivateUsage]

    pipeline.set(
        "guard",
        GuardMiddleware(
            section,
            secrets=secret_values,
            metrics=default_metrics() if config.observability.metrics.enabled else None,
        ),
    )


def _state(config: PlaneConfig, redis: Callable[[], Any]) -> StateSpace:
    """The state store is cheap until used: memory is an empty dict, Redis only when configured."""
    from mcplane.backends.state import MemoryStateStore, RedisStateStore, StateSpace

    section = config.state
    store: Any = RedisStateStore(redis()) if section.backend == "redis" else MemoryStateStore()
    return StateSpace(store, ttl=section.ttl, max_value_bytes=section.max_value_bytes)


def _audit(config: PlaneConfig, pipeline: Pipeline, layers: Layers) -> None:
    section = config.audit
    if section is None:
        return
    from mcplane.audit import AuditOptions, CheckpointOptions, JsonlSink, PostgresSink
    from mcplane.errors import ConfigError
    from mcplane.middleware.audit import AuditMiddleware

    checkpoints = CheckpointOptions(
        key=section.checkpoint_key,
        trusted_keys=tuple(section.checkpoint_public_keys),
        every=section.checkpoint_every,
        interval=section.checkpoint_interval,
        location=section.checkpoint_table if section.sink == "postgres" else section.checkpoint_path,
    )
    if section.sink == "postgres":
        assert section.dsn is not None  # checked when the config was validated
        sink: JsonlSink | PostgresSink = PostgresSink(section.dsn, table=section.table, checkpoints=checkpoints)
        key_home = f"table {sink.checkpoint_table}_key"
    else:
        sink = JsonlSink(
            section.path,
            fsync=section.fsync,
            rotate_bytes=section.rotate_bytes,
            rotate_interval=section.rotate_interval,
            checkpoints=checkpoints,
        )
        key_home = str(sink.key_path)
    broken = sink.verify_at_start()  # blocks start-up for one read of the chain's tail
    if broken is not None:
        if section.on_broken_chain == "refuse":
            raise ConfigError(f"audit chain broken, refusing to start (audit.on_broken_chain: refuse): {broken}")
        logger.error("audit chain broken: %s; not ready, and calls are refused until it is repaired", broken)
    if sink.generated_key:
        logger.warning(
            "audit checkpoints are signed with a key generated in %s, kept beside the log: whoever can rewrite the "
            "log can read it; set audit.checkpoint_key to a managed secret",
            key_home,
        )
    if section.trust_forwarded:
        logger.warning(
            "audit.trust_forwarded is deprecated: it believes X-Forwarded-For from every peer, so any client "
            "chooses the address recorded for it; list your proxies in http.trusted_proxies and remove it"
        )
    options = AuditOptions(
        fail_open=section.fail_open,
        trusted_proxies=tuple(config.http.trusted_proxies),
        trust_forwarded=section.trust_forwarded,
    )
    middleware = AuditMiddleware(sink, options)
    pipeline.set("audit", middleware)
    layers.closers.append(middleware.aclose)

    async def healthy() -> tuple[bool, str]:
        writer = middleware.writer
        await writer.flush()
        if writer.broken is not None:
            return False, f"audit chain broken: {writer.broken}"
        return (True, "ok") if writer.healthy else (False, "audit sink failing")

    layers.health_checks["audit"] = healthy


def _observability(config: PlaneConfig, pipeline: Pipeline, layers: Layers) -> None:
    from mcplane.observability import build_observability

    layers.observability = build_observability(config, pipeline)
    layers.closers.append(layers.observability.aclose)
