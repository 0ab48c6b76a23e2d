"""The ``rate_limit`` slot: calls per tool per principal, and per tool overall.

Policy fields read from ``call.policy`` (any call kind; resources and prompts are limited the
same way when their policy says so):

``rate_limit``
    ``"100/minute"``, ``"5 per 2 seconds"`` or a list of such strings (all must hold). Absent:
    :attr:`RateLimitOptions.default` applies. ``None``, ``False``, ``"off"`` or ``[]``: no limit,
    not even the default.
``rate_limit_scope``
    ``"principal"`` (one bucket per caller: tenant and subject), ``"global"`` (one bucket for
    the tool, shared by everyone), ``"both"`` or a list of these. Absent:
    :attr:`RateLimitOptions.scope`. Anonymous callers share one principal bucket.

Every bucket of one call is taken in one atomic ``hit_all`` (they share the tool's hash tag),
so a call the global limit refuses does not spend the caller's own quota. A refusal raises
:class:`~mcplane.errors.RateLimited` with ``retry_after_ms`` and ``details.scope``. The algorithm
(GCRA) and its reasons are in :mod:`mcplane.backends.rate_limit`.

When the backend is unreachable the call fails with ``dependency_unavailable`` unless
``fail_open`` is set, in which case it runs unlimited and a warning is logged. With
``rate_limit.lease`` the backend is a :class:`~mcplane.backends.lease.LeasedRateLimiter`: most
calls are answered from calls leased in batches, with the same decisions' shape.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from mcplane.backends.keys import tag_for
from mcplane.backends.lease import LeasedRateLimiter
from mcplane.backends.rate_limit import Limit, RateLimiter, parse_limits
from mcplane.errors import ConfigError, DependencyUnavailable, RateLimited
from mcplane.pipeline import Call, CallNext

__all__ = ["RateLimitMiddleware", "RateLimitOptions", "Scope", "resolve_limits", "resolve_scopes"]

logger = logging.getLogger("mcplane.rate_limit")

Scope = Literal["principal", "global"]
_SCOPES: tuple[Scope, ...] = ("principal", "global")
_OFF = (None, False, "off", "")


@dataclass(frozen=True, slots=True)
class RateLimitOptions:
    default: str | Sequence[str] | None = None
    """The limit for calls whose policy declares none; ``None``: such calls are not limited."""
    scope: str | Sequence[str] = "principal"
    """The scope for calls whose policy declares none: ``"principal"``, ``"global"`` or ``"both"``."""
    fail_open: bool = False
    """On an unreachable backend, let calls through (``True``) or answer ``dependency_unavailable``."""

    def __post_init__(self) -> None:
        resolve_limits(self.default, field="rate_limit default")
        resolve_scopes(self.scope, field="rate_limit scope")


def resolve_limits(value: Any, *, field: str = "rate_limit") -> tuple[Limit, ...]:
    """A policy's ``rate_limit`` value as limits (empty when off). Raises ``ConfigError`` when malformed."""
    if value in _OFF or (isinstance(value, list | tuple) and not value):
        return ()
    if isinstance(value, list | tuple):
        value = tuple(str(item) for item in value)
    elif not isinstance(value, str):
        raise ConfigError(f"{field}: expected a string like '100/minute' or a list of them, got {value!r}")
    try:
        return _parse(value)
    except ValueError as exc:
        raise ConfigError(f"{field}: {exc}") from None


@functools.lru_cache(maxsize=1024)
def _parse(value: str | tuple[str, ...]) -> tuple[Limit, ...]:
    return parse_limits(value)


def resolve_scopes(value: Any, *, field: str = "rate_limit_scope") -> tuple[Scope, ...]:
    if value == "both":
        value = _SCOPES
    items: list[Any] = [value] if isinstance(value, str) else list(value) if isinstance(value, list | tuple) else []
    scopes: tuple[Scope, ...] = tuple(scope for scope in _SCOPES if scope in items)
    unknown = [item for item in items if item not in _SCOPES]
    if unknown or not scopes:
        raise ConfigError(f"{field}: expected 'principal', 'global', 'both' or a list of them, got {value!r}")
    return scopes


_Plan = tuple[tuple[tuple[str, Limit], ...], dict[Scope, str], tuple[Limit, ...]]
"""A call's checks, its bucket key per scope, its limits (``()``: not limited)."""
_UNLIMITED: _Plan = ((), {}, ())
_PLANS_SIZE = 4096


class RateLimitMiddleware:
    def __init__(self, options: RateLimitOptions, backend: RateLimiter) -> None:
        self.options = options
        self.backend = backend
        self._default_scopes = resolve_scopes(options.scope, field="rate_limit scope")
        self._plans: dict[tuple[Any, ...], _Plan] = {}
        self._take_held = backend.take_held if isinstance(backend, LeasedRateLimiter) else None
        """A leased limiter's call already held is spent without a coroutine or a ``Decision``."""

    async def __call__(self, call: Call, call_next: CallNext) -> Any:
        policy = call.policy
        principal = call.context.principal
        # Everything a call's checks depend on: the same tool and caller take the same buckets.
        ident = (policy.rate_limit, policy.rate_limit_scope, call.kind, call.name, principal.tenant, principal.subject)
        try:
            plan = self._plans.get(ident)
        except TypeError:  # a policy value that does not hash: worked out per call
            plan = self._plan(call)
        else:
            if plan is None:
                plan = self._plan(call)
                if len(self._plans) >= _PLANS_SIZE:
                    del self._plans[next(iter(self._plans))]  # the oldest
                self._plans[ident] = plan
        checks, keys, limits = plan
        if not checks:
            return await call_next(call)
        take_held = self._take_held
        if take_held is not None and take_held(checks):
            return await call_next(call)
        try:
            decision = await self.backend.hit_all(checks)
        except DependencyUnavailable:
            if not self.options.fail_open:
                raise
            logger.warning(
                "rate limit store unavailable; %s %r runs unlimited (fail_open, correlation_id=%s)",
                call.kind,
                call.name,
                call.context.correlation_id,
            )
            return await call_next(call)
        if not decision.allowed:
            scope = next(scope for scope, key in keys.items() if key == decision.key)
            raise RateLimited(
                f"rate limit exceeded for {call.kind} {call.name!r}",
                retry_after_ms=decision.retry_after_ms,
                details={"scope": scope, "limits": [str(limit) for limit in limits]},
            )
        return await call_next(call)

    def _plan(self, call: Call) -> _Plan:
        declared = call.policy.rate_limit
        limits = resolve_limits(self.options.default if declared is None else declared)
        if not limits:
            return _UNLIMITED
        scope_value = call.policy.rate_limit_scope
        scopes = self._default_scopes if scope_value is None else resolve_scopes(scope_value)
        keys: dict[Scope, str] = {scope: self._key(call, scope) for scope in scopes}
        return tuple((key, limit) for key in keys.values() for limit in limits), keys, limits

    @staticmethod
    def _key(call: Call, scope: Scope) -> str:
        tag = tag_for(call.kind, call.name)
        if scope == "global":
            return f"{tag}:global"
        principal = call.context.principal
        return f"{tag}:principal:{_who(principal.tenant, principal.subject)}"


@functools.lru_cache(maxsize=4096)
def _who(tenant: str | None, subject: str) -> str:
    return json.dumps([tenant, subject], ensure_ascii=False, separators=(",", ":"))
