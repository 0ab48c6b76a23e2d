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
from typing import Any

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
from mcplane.pipeline import Middleware, Pipeline

__all__ = ["Core", "build_pipeline"]

Policies = Mapping[str, Mapping[str, Any]]


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
    slots: dict[str, Middleware | None] = {
        "errors": core.errors,  # outermost: every failure becomes a stable error code, nothing escapes
        "drain": core.drain if core.drain.bound else None,  # inside errors: refusals are ordinary answers
        "validate": core.validate,  # bounds every call's arguments, then checks schemas
        "timeout": core.timeout,  # innermost: the provider's own time, the deadline carried across hops
    }
    if policies is not None:
        if (refresh := secrets_check(config)) is not None:
            layers.health_checks["secrets"] = refresh
        backends = opening(config, layers)
        cache = cache_layer(config, policies, backends)
        budget = budget_layer(config, backends)
        slots.update(
            authenticate=authenticate_layer(config, layers),  # the principal, before anything asks who
            authorize=authorize_layer(config, policies),  # inside audit, so denials are recorded
            budget=budget,
            rate_limit=rate_limit_layer(config, policies, backends),
            guard=guard_layer(config),  # inside audit and metrics; outside validate and cache: every answer
            cache=cache,  # inside rate limiting and guards: a hit still costs quota and is still scanned
        )
        layers.state = state_space(config, backends)
        audit = audit_layer(config, layers, backends)  # after authenticate (who), before authorize (denials)
        slots["audit"] = audit
        # Last: it instruments the cache, audit and budget layers made above.
        from mcplane.observability import build_observability

        obs = layers.observability = build_observability(config, cache=cache, audit=audit, budget=budget)
        layers.closers.append(obs.aclose)
        slots.update(tracing=obs.tracing, metrics=obs.middleware)  # outside the rest: they see every call whole
    pipeline = Pipeline()
    for slot, middleware in slots.items():
        pipeline.set(slot, middleware)
    layers.pipeline = pipeline.freeze()
    return layers
