"""Build the observability layers from the ``observability`` section of ``mcplane.yaml``.

:func:`build_observability` makes them; :func:`mcplane.stack.build_pipeline` puts them in their
slots. The section is always there, with defaults when the file has none:

- the ``metrics`` slot gets :class:`~mcplane.observability.middleware.ObserveMiddleware`:
  metrics unless ``metrics.enabled: false`` (then ``/metrics`` answers 404), and one log event
  per call (written when mcplane's loggers are at INFO, as ``mcplane run`` sets them by default);
- the layers that keep their own counts are read, not rewritten: the cache's
  :class:`~mcplane.backends.cache.CacheStats` and the hot path's count are carried into their
  counters after each call and at each scrape; the budget store and the audit sink are wrapped
  in counting proxies;
- the ``tracing`` slot gets :class:`~mcplane.observability.tracing.TracingMiddleware` when
  ``tracing.enabled``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio.to_thread

from mcplane.errors import ConfigError
from mcplane.observability.metrics import (
    CounterSync,
    CountingAuditSink,
    CountingBudgetStore,
    Metrics,
    default_metrics,
    scrape,
    serve_metrics_port,
)
from mcplane.observability.middleware import ObserveMiddleware
from mcplane.sdk_adapter.mcpserver import lowlevel_server

if TYPE_CHECKING:
    from mcplane.app import Plane
    from mcplane.config import PlaneConfig
    from mcplane.middleware.audit import AuditMiddleware
    from mcplane.middleware.budget import BudgetMiddleware
    from mcplane.middleware.cache import CacheMiddleware
    from mcplane.observability.tracing import TracingMiddleware

__all__ = ["Observability", "build_observability"]

metrics_port_elsewhere = False
"""Set in supervised worker processes: the supervisor serves ``metrics.port`` for all of them."""


@dataclass
class Observability:
    """What :func:`build_observability` installed, for the transports (``/metrics``, readiness)."""

    metrics: Metrics | None = None
    middleware: ObserveMiddleware | None = None
    """For the ``metrics`` slot."""
    tracing: TracingMiddleware | None = None
    """For the ``tracing`` slot (``None``: tracing is off and the slot stays empty)."""
    tracer_provider: Any = None
    own_port: bool = False
    """``/metrics`` is served on ``metrics.port``, not on the MCP port."""
    sync: CounterSync = field(default_factory=CounterSync)
    _undo: list[Callable[[], None]] = field(default_factory=list[Callable[[], None]])
    _bound: bool = False

    @property
    def serves_mcp_port(self) -> bool:
        """Whether the HTTP tier answers ``/metrics``."""
        return self.metrics is not None and not self.own_port

    async def scrape(self) -> tuple[bytes, str]:
        self.sync.sync()
        assert self.metrics is not None
        return await scrape(self.metrics.registry)

    def set_ready(self, ready: bool) -> None:
        if self.metrics is not None:
            self.metrics.ready.set(1 if ready else 0)

    def bind(self, plane: Plane) -> None:
        """Learn the served plane: count its hot path; narrow the SDK's spans when tracing. Idempotent."""
        if self._bound:
            return
        self._bound = True
        if self.metrics is not None:
            fast = plane.fast
            self.sync.add(lambda: fast.served, self.metrics.fast_path_calls)
            if self.middleware is not None:
                self.middleware.sync = self.sync
        if self.tracer_provider is not None:
            from mcplane.observability.tracing import narrow_sdk_spans

            self._undo.append(narrow_sdk_spans(lowlevel_server(plane.sdk)))

    async def aclose(self) -> None:
        """Stop the metrics port, restore the SDK's spans, flush and stop the span exporter."""
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()
        provider = self.tracer_provider
        if provider is not None:
            await anyio.to_thread.run_sync(provider.shutdown)


def build_observability(
    config: PlaneConfig,
    *,
    cache: CacheMiddleware | None = None,
    audit: AuditMiddleware | None = None,
    budget: BudgetMiddleware | None = None,
    metrics: Metrics | None = None,
) -> Observability:
    """The middleware for the ``metrics`` and ``tracing`` slots, for ``config``.

    It instruments the ``cache``, ``audit`` and ``budget`` layers it is given, so it is made
    after them. ``metrics`` replaces the process's default metrics (tests).
    """
    section = config.observability
    obs = Observability()
    if section.tracing.enabled:
        from mcplane._version import __version__
        from mcplane.observability.tracing import TracingMiddleware, build_tracer_provider

        obs.tracer_provider = build_tracer_provider(section.tracing, config.server.name or "mcplane")
        obs.tracing = TracingMiddleware(obs.tracer_provider.get_tracer("mcplane", __version__))
    count_budget = False
    if section.metrics.enabled:
        obs.metrics = metrics = metrics if metrics is not None else default_metrics()
        count_budget = _instrument(metrics, obs.sync, cache=cache, audit=audit, budget=budget)
        if section.metrics.port is not None:
            obs.own_port = True
            if not metrics_port_elsewhere:
                host, port = section.metrics.host, section.metrics.port
                try:
                    obs._undo.append(serve_metrics_port(host, port, metrics.registry))
                except OSError as exc:
                    raise ConfigError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from None
    obs.middleware = ObserveMiddleware(obs.metrics, sync=obs.sync, count_budget=count_budget)
    obs._undo.append(obs.middleware.close)  # its plain counts: carried, and no longer at each collection
    return obs


def _instrument(
    metrics: Metrics,
    sync: CounterSync,
    *,
    cache: CacheMiddleware | None,
    audit: AuditMiddleware | None,
    budget: BudgetMiddleware | None,
) -> bool:
    """Count what the cache, budget and audit layers do; True when the budget store is counted."""
    if cache is not None:
        stats = cache.backend.stats
        sync.add(lambda: stats.hits, metrics.cache_hits)
        sync.add(lambda: stats.misses, metrics.cache_misses)
    if audit is not None and not isinstance(audit.writer.sink, CountingAuditSink):
        audit.writer.sink = CountingAuditSink(audit.writer.sink, metrics.audit_sink_errors)
    if budget is not None:
        if not isinstance(budget.backend, CountingBudgetStore):
            budget.backend = CountingBudgetStore(budget.backend, metrics.budget_spent)
        return True
    return False
