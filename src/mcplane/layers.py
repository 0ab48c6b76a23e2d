"""One constructor per configurable layer, each reading its config section (and the tools' policies).

:func:`mcplane.stack.build_pipeline` calls them and puts what they return in the pipeline's
slots. A layer is made only when something asks for it — a config section, or a tool whose
policy declares it (``rate_limit=``, ``cache_ttl=``, ``roles=``) — so a bare plane pays for
nothing it does not use. Backends come from :mod:`mcplane.backends.registry` by the name the
section gives (memory by default); a Redis that is configured but down is never replaced by
memory (no silent fallback): each layer fails open or closed as its section says, and
readiness reports it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from re import Pattern
from typing import TYPE_CHECKING, Any

from mcplane.config import PlaneConfig
from mcplane.pipeline import Pipeline
from mcplane.tool_policy import ToolPolicy

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from mcplane.auth import AuthenticateMiddleware, Authenticator, JWTConfig
    from mcplane.backends.registry import Opening
    from mcplane.backends.state import StateSpace
    from mcplane.middleware.audit import AuditMiddleware
    from mcplane.middleware.authorize import AuthorizeMiddleware
    from mcplane.middleware.budget import BudgetMiddleware
    from mcplane.middleware.cache import CacheMiddleware
    from mcplane.middleware.guard import GuardMiddleware
    from mcplane.middleware.rate_limit import RateLimitMiddleware
    from mcplane.observability import Observability

__all__ = [
    "Layers",
    "audit_layer",
    "authenticate_layer",
    "authorize_layer",
    "budget_layer",
    "cache_layer",
    "guard_layer",
    "opening",
    "rate_limit_layer",
    "secrets_check",
    "state_space",
]

logger = logging.getLogger("mcplane.layers")

HealthCheck = Callable[[], Awaitable[tuple[bool, str]]]
Route = Callable[[Any, Any, Any], Awaitable[None]]
"""An ASGI callable ``(scope, receive, send)`` for one HTTP path."""


@dataclass
class Layers:
    """What :func:`~mcplane.stack.build_pipeline` made: the pipeline, the authenticator, checks, and cleanups."""

    pipeline: Pipeline = field(default_factory=lambda: Pipeline().freeze())
    """The built pipeline, frozen; the plane serves its application's own slots over it."""
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


def _wants(policies: Mapping[str, ToolPolicy], key: str) -> bool:
    return any(getattr(policy, key) not in (None, False) for policy in policies.values())


def opening(config: PlaneConfig, layers: Layers) -> Opening:
    """What backend factories build from: one Redis client, connected when the first one asks for it."""
    from mcplane.backends.registry import Opening

    client: Redis | None = None

    def redis() -> Redis:
        nonlocal client
        if client is None:
            from mcplane.backends.redis import RedisOptions, connect_redis

            assert config.redis_url is not None  # checked when the config was validated
            options = RedisOptions(**config.redis.model_dump())
            connected = client = connect_redis(config.redis_url.get(), options=options)
            layers.closers.append(connected.aclose)

            async def ping() -> tuple[bool, str]:
                try:
                    await connected.ping()
                except Exception as exc:  # any failure means "not ready"; the reason is logged, not shown
                    logger.warning("redis ping failed: %s", type(exc).__name__)
                    return False, "redis unreachable"
                return True, "ok"

            layers.health_checks["redis"] = ping
        return client

    return Opening(config, redis)


def secrets_check(config: PlaneConfig) -> HealthCheck | None:
    """Readiness probes arrive every few seconds: they keep refreshable secret references fresh."""
    secrets = config.secrets
    if secrets is None or secrets.refresh_interval is None or not secrets._tracked:  # pyright: ignore[reportPrivateUsage]
        return None

    async def refresh() -> tuple[bool, str]:
        await secrets.refresh_if_due()
        return True, "ok"

    return refresh


def authenticate_layer(
    config: PlaneConfig, layers: Layers, issued: JWTConfig | None = None
) -> AuthenticateMiddleware | None:
    """The ``auth`` section: the transports' authenticator, and the slot that puts its principal on calls.

    ``issued``: the tokens this server issues (the ``oauth`` section), trusted alongside the rest."""
    from mcplane.auth import AuthenticateMiddleware, Authenticator

    if config.auth is None:
        return None
    layers.authenticator = Authenticator(config.auth, issued=issued)
    return AuthenticateMiddleware(required=config.auth.required)


def authorize_layer(config: PlaneConfig, policies: Mapping[str, ToolPolicy]) -> AuthorizeMiddleware | None:
    """Roles/scopes by glob and CEL rules (``authorization``), or the roles/scopes tools declare."""
    if config.authorization is None and not _wants(policies, "roles") and not _wants(policies, "scopes"):
        return None
    from mcplane.audit.forwarded import TrustedProxies
    from mcplane.auth import AccessPolicy
    from mcplane.middleware.authorize import AuthorizeMiddleware
    from mcplane.middleware.validate import ArgumentLimits
    from mcplane.observability.metrics import default_metrics

    limits = config.limits
    return AuthorizeMiddleware(
        config.authorization or AccessPolicy(),
        limits=ArgumentLimits(max_nodes=limits.max_argument_nodes, max_depth=limits.max_argument_depth),
        proxies=TrustedProxies(tuple(config.http.trusted_proxies)),
        metrics=default_metrics() if config.observability.metrics.enabled else None,
    )


def rate_limit_layer(
    config: PlaneConfig, policies: Mapping[str, ToolPolicy], backends: Opening
) -> RateLimitMiddleware | None:
    section = config.rate_limit
    if section is None and not _wants(policies, "rate_limit"):
        return None
    from mcplane.backends.registry import RATE_LIMIT
    from mcplane.middleware.rate_limit import RateLimitMiddleware, RateLimitOptions

    limiter = RATE_LIMIT.build(section.backend if section is not None else "memory", backends)
    options = (
        RateLimitOptions(default=section.default, scope=section.scope, fail_open=section.fail_open)
        if section is not None
        else RateLimitOptions()
    )
    return RateLimitMiddleware(options, limiter)


def cache_layer(config: PlaneConfig, policies: Mapping[str, ToolPolicy], backends: Opening) -> CacheMiddleware | None:
    section = config.cache
    if (section is None or not section.enabled) and not _wants(policies, "cache_ttl"):
        return None
    from mcplane.backends import EncryptedCache
    from mcplane.backends.registry import CACHE
    from mcplane.middleware.cache import CacheMiddleware, CacheOptions

    cache = CACHE.build(section.backend if section is not None else "memory", backends)
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
    return CacheMiddleware(options, cache)


def budget_layer(config: PlaneConfig, backends: Opening) -> BudgetMiddleware | None:
    section = config.budget
    if section is None:
        return None
    from mcplane.backends.registry import BUDGET
    from mcplane.middleware.budget import BudgetMiddleware, BudgetOptions

    options = BudgetOptions(
        limit=section.limit,
        window=section.window,
        session_limit=section.session_limit,
        charge_results=section.charge_results,
        fail_open=section.fail_open,
    )
    return BudgetMiddleware(options, BUDGET.build(section.backend, backends))


def guard_layer(config: PlaneConfig) -> GuardMiddleware | None:
    """Output guards (the ``guards`` section): scan tool results, mask or refuse what they find."""
    section = config.guards
    if section is None or not section.tools:
        return None
    from mcplane.middleware.guard import GuardMiddleware
    from mcplane.observability.metrics import default_metrics

    secrets = config.secrets

    def secret_values() -> Pattern[str] | None:
        # The resolver's pattern of every value it ever resolved (old ones too, after a refresh).
        return secrets._pattern if secrets is not None else None  # pyright: ignore[reportPrivateUsage]

    return GuardMiddleware(
        section,
        secrets=secret_values,
        metrics=default_metrics() if config.observability.metrics.enabled else None,
    )


def state_space(config: PlaneConfig, backends: Opening) -> StateSpace:
    """The state store is cheap until used: memory is an empty dict, Redis only when configured."""
    from mcplane.backends.registry import STATE
    from mcplane.backends.state import StateSpace

    section = config.state
    return StateSpace(STATE.build(section.backend, backends), ttl=section.ttl, max_value_bytes=section.max_value_bytes)


def audit_layer(config: PlaneConfig, layers: Layers, backends: Opening) -> AuditMiddleware | None:
    section = config.audit
    if section is None:
        return None
    from mcplane.audit import AuditOptions
    from mcplane.backends.registry import AUDIT_SINK
    from mcplane.errors import ConfigError
    from mcplane.middleware.audit import AuditMiddleware

    sink = AUDIT_SINK.build(section.sink, backends)
    broken = sink.verify_at_start()  # blocks start-up for one read of the chain's tail
    if broken is not None:
        if section.on_broken_chain == "refuse":
            raise ConfigError(f"audit chain broken, refusing to start (audit.on_broken_chain: refuse): {broken}")
        logger.error("audit chain broken: %s; not ready, and calls are refused until it is repaired", broken)
    if sink.generated_key:
        logger.warning(
            "audit checkpoints are signed with a key generated in %s, kept beside the log: whoever can rewrite the "
            "log can read it; set audit.checkpoint_key to a managed secret",
            sink.key_location,
        )
    if section.trust_forwarded:
        logger.warning(
            "audit.trust_forwarded is deprecated: it believes X-Forwarded-For from every peer, so any client "
            "chooses the address recorded for it; list your proxies in http.trusted_proxies and remove it"
        )
    options = AuditOptions(
        fail_open=section.fail_open,
        pending=section.pending,
        trusted_proxies=tuple(config.http.trusted_proxies),
        trust_forwarded=section.trust_forwarded,
    )
    middleware = AuditMiddleware(sink, options)
    layers.closers.append(middleware.aclose)

    async def healthy() -> tuple[bool, str]:
        writer = middleware.writer
        await writer.flush()
        if writer.broken is not None:
            return False, f"audit chain broken: {writer.broken}"
        return (True, "ok") if writer.healthy else (False, "audit sink failing")

    layers.health_checks["audit"] = healthy
    return middleware
