"""Fill every pipeline slot from the config, in one place: :func:`build_pipeline`.

Reading :func:`build_pipeline` tells which middleware sits in which slot and why. Nothing
edits the pipeline it returns (it is frozen); what only a start makes known is bound to objects
already in their slots: a transport's lifecycle binds the :class:`~mcplane.middleware.drain.DrainGate`
before the start, observability learns the served plane when it is ready.

An application's own middleware (``plane.pipeline.set(slot, middleware)``) is served over the
built pipeline: a slot the application fills wins over the one the config filled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from mcplane.config import PlaneConfig
from mcplane.layers import (
    Layers,
    audit_layer,
    authenticate_layer,
    authorize_layer,
    budget_layer,
    cache_layer,
    guard_layer,
    opening,
    rate_limit_layer,
    secrets_check,
    state_space,
)
from mcplane.middleware.drain import DrainGate
from mcplane.middleware.errors import ErrorsMiddleware
from mcplane.middleware.timeout import TimeoutMiddleware
from mcplane.middleware.validate import ArgumentLimits, ValidateMiddleware
from mcplane.oauth.mount import oauth_server
from mcplane.pipeline import Middleware, Pipeline
from mcplane.tool_policy import ToolPolicy

__all__ = ["Core", "build_pipeline"]

Policies = Mapping[str, ToolPolicy]


@dataclass
class Core:
    """The layers every plane has, made with it: they exist (and are configured) before it starts."""

    errors: ErrorsMiddleware = field(default_factory=ErrorsMiddleware)
    drain: DrainGate = field(default_factory=DrainGate)
    validate: ValidateMiddleware = field(default_factory=ValidateMiddleware)
    timeout: TimeoutMiddleware = field(default_factory=lambda: TimeoutMiddleware(PlaneConfig().server.default_timeout))

    def configure(self, config: PlaneConfig) -> None:
        """Apply ``config``'s default timeout and argument limits."""
        self.timeout.default_timeout = config.server.default_timeout
        self.validate.limits = ArgumentLimits(
            max_nodes=config.limits.max_argument_nodes,
            max_depth=config.limits.max_argument_depth,
            max_details=config.limits.max_error_details,
            max_result_bytes=config.limits.max_result_bytes,
        )


def build_pipeline(config: PlaneConfig, policies: Policies | None = None, core: Core | None = None) -> Layers:
    """Every slot of the pipeline for ``config``; returns the frozen pipeline with what serves it.

    ``policies`` are the merged per-tool policies of a starting plane. ``None`` means the plane
    has not started: only the ``core`` layers (errors, drain, validate, timeout) are placed,
    since the others open backends, sinks and exporters that belong to a start. ``core`` is the
    plane's own (a fresh one configured from ``config`` when omitted).
    """
    if core is None:
        core = Core()
        core.configure(config)
    layers = Layers()
    started = _StartedLayers()
    if policies is not None:
        started = _start(config, policies, layers)
    slots: dict[str, Middleware | None] = {
        # Outermost: every failure becomes an answer with a stable code; nothing escapes unmapped.
        "errors": core.errors,
        # Just inside errors, so a refusal while draining is an ordinary error answer; filled only
        # when a transport's lifecycle serves the plane (an unserved plane pays nothing).
        "drain": core.drain if core.drain.bound else None,
        # Outside every other layer: the span and the call's metrics and log see the call whole.
        "tracing": started.tracing,
        "metrics": started.metrics,
        # The principal goes on the call before anything asks who is calling.
        "authenticate": started.authenticate,
        # After authenticate (it knows who), before authorize (denials are recorded).
        "audit": started.audit,
        "authorize": started.authorize,
        "budget": started.budget,
        "rate_limit": started.rate_limit,
        # Inside audit and metrics (a refusal is recorded and counted); outside validate and cache
        # (every answer is scanned, cache hits included, never one over the result size limit).
        "guard": started.guard,
        # Bounds every call's arguments, then checks them against the schema.
        "validate": core.validate,
        # Inside rate limiting and guards: a hit still costs quota and is still scanned.
        "cache": started.cache,
        # Innermost: the provider's own time, the caller's deadline carried across hops.
        "timeout": core.timeout,
    }
    pipeline = Pipeline()
    for slot, middleware in slots.items():
        pipeline.set(slot, middleware)
    layers.pipeline = pipeline.freeze()
    return layers


@dataclass
class _StartedLayers:
    """The layers a start makes (each ``None`` when nothing asks for it)."""

    tracing: Middleware | None = None
    metrics: Middleware | None = None
    authenticate: Middleware | None = None
    audit: Middleware | None = None
    authorize: Middleware | None = None
    budget: Middleware | None = None
    rate_limit: Middleware | None = None
    guard: Middleware | None = None
    cache: Middleware | None = None


def _start(config: PlaneConfig, policies: Policies, layers: Layers) -> _StartedLayers:
    """Make the layers that open backends, sinks and exporters; record their checks and closers in ``layers``."""
    from mcplane.observability import build_observability

    if (refresh := secrets_check(config)) is not None:
        layers.health_checks["secrets"] = refresh
    backends = opening(config, layers)
    # Before authentication: the authorization server's keys are trusted by the authenticator.
    server = oauth_server(config, layers, backends)
    issued = server.keys.verification(server.config.issuer, server.resource) if server is not None else None
    made = _StartedLayers(
        authenticate=authenticate_layer(config, layers, issued),
        authorize=authorize_layer(config, policies),
        rate_limit=rate_limit_layer(config, policies, backends),
        guard=guard_layer(config),
    )
    cache = made.cache = cache_layer(config, policies, backends)
    budget = made.budget = budget_layer(config, backends)
    layers.state = state_space(config, backends)
    audit = made.audit = audit_layer(config, layers, backends)
    # Last: it instruments the cache, audit and budget layers made above.
    obs = layers.observability = build_observability(config, cache=cache, audit=audit, budget=budget)
    layers.closers.append(obs.aclose)
    made.tracing, made.metrics = obs.tracing, obs.middleware
    return made
