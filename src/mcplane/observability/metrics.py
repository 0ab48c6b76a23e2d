"""Prometheus metrics: the names dashboards and alert rules are written against, and their exposition.

The names are a contract (``deploy/`` rules and dashboards use them); never rename one::

    mcplane_calls_total{kind,name,status,code}     counter; status ok|error, code "" when ok
    mcplane_call_duration_seconds{kind,name}       histogram, 0.5 ms .. 30 s
    mcplane_calls_in_flight{kind}                  gauge
    mcplane_rate_limited_total{name}               counter
    mcplane_cache_requests_total{result}           counter; result hit|miss
    mcplane_budget_spent_total{name}               counter; budget units
    mcplane_circuit_state{upstream,endpoint}       gauge; 0 closed, 1 half-open, 2 open
    mcplane_upstream_healthy{upstream}             gauge; 1 healthy, 0 not
    mcplane_upstream_calls_total{upstream,endpoint,outcome}  counter; gateway attempts by outcome
    mcplane_audit_sink_errors_total                counter; failed sink writes and pings
    mcplane_ready                                  gauge; 1 while ready, 0 when not (or draining)
    mcplane_fast_path_calls_total                  counter; calls answered on the hot path
    mcplane_http_refusals_total{status,reason}     counter; refused before the protocol (401, 403, 421, 431, ...)
    mcplane_canary_rollbacks_total{tool}           counter; automatic returns of a versioned tool to stable
    mcplane_canary_weight{tool}                    gauge; the canary's share of unpinned calls in force
    mcplane_rule_denials_total{rule,outcome}       counter; denials by an authorization rule; outcome false|error
    mcplane_guard_hits_total{kind,action}          counter; what output guards found in results; action mask|refuse
    mcplane_gateway_tool_quarantined_total{upstream,reason}  counter; tools withheld: changed|unpinned|injection
    mcplane_gateway_tools_quarantined{upstream}    gauge; tools withheld now
    mcplane_gateway_tool_findings_total{upstream,kind}  counter; injection-scan findings in tool definitions
    process_*                                      prometheus-client's process collector

``name`` is a registered tool or prompt name, a static resource URI or a resource template,
never a string a client made up: unknown names count as ``(unknown)``, so a client cannot grow
the number of series.

**Several worker processes** (``mcplane run --workers N``): prometheus-client's multiprocess
mode. The supervisor points ``PROMETHEUS_MULTIPROC_DIR`` at an empty directory before any worker
starts; each worker writes its values to memory-mapped files there, and a scrape of any worker
(or of the supervisor's metrics port) reads them all: counters and histograms are summed over
workers (including workers that have exited since), ``mcplane_calls_in_flight`` is summed over
live workers, ``mcplane_ready`` and ``mcplane_upstream_healthy`` take the minimum over live
workers and ``mcplane_circuit_state`` the maximum. ``process_*`` metrics are not available in
that mode (prometheus-client cannot merge them).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

if TYPE_CHECKING:
    from mcplane.audit.sink import AuditSink
    from mcplane.backends.budget import BudgetDecision, BudgetStore

__all__ = [
    "BUCKETS",
    "MULTIPROC_ENV",
    "CounterSync",
    "CountingAuditSink",
    "CountingBudgetStore",
    "Metrics",
    "default_metrics",
    "multiprocess_dir",
    "scrape",
    "serve_metrics_port",
]

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Seconds; fine below 10 ms where local tools live, coarse up to the longest sensible timeout."""

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNKNOWN = "(unknown)"

current_call_name: ContextVar[str] = ContextVar("mcplane_current_call_name", default="")
"""The name of the call running in this task (set by the metrics slot for the budget counter)."""


def multiprocess_dir() -> str | None:
    """The multiprocess directory when prometheus-client runs in multiprocess mode, else ``None``."""
    return os.environ.get(MULTIPROC_ENV) or None


class _Folds:
    """A collector that collects nothing: it runs the folds (plain counts carried into the metrics'
    children) before the registry collects the metrics registered after it."""

    def __init__(self) -> None:
        self._folds: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def add(self, fold: Callable[[], None]) -> Callable[[], None]:
        self._folds.append(fold)

        def remove() -> None:
            with self._lock:
                if fold in self._folds:
                    fold()  # what was counted since the last collection
                    self._folds.remove(fold)

        return remove

    def run(self) -> None:
        with self._lock:  # scrapes may come from the metrics port's thread and the event loop's
            for fold in self._folds:
                fold()

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> list[Any]:
        self.run()
        return []


class Metrics:
    """Every mcplane metric, registered once in ``registry`` (the process default unless given)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else REGISTRY
        reg = self.registry
        self.plain_counting = multiprocess_dir() is None
        """Whether hot counters may be kept as plain numbers and carried into the metrics at each
        collection (:meth:`before_collect`); not in multiprocess mode, where a scrape reads every
        worker's files and no worker is asked to carry anything."""
        self._folds = _Folds()
        reg.register(self._folds)  # first: a collection runs the folds before it reads the metrics
        self.calls = Counter(
            "mcplane_calls_total",
            "Calls (tools/call, resources/read, prompts/get) by outcome; code is the stable error code.",
            ["kind", "name", "status", "code"],
            registry=reg,
        )
        self.duration = Histogram(
            "mcplane_call_duration_seconds",
            "Time to answer a call, through the whole pipeline.",
            ["kind", "name"],
            buckets=BUCKETS,
            registry=reg,
        )
        self.in_flight = Gauge(
            "mcplane_calls_in_flight",
            "Calls being answered now.",
            ["kind"],
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.rate_limited = Counter(
            "mcplane_rate_limited_total", "Calls refused by the rate limit.", ["name"], registry=reg
        )
        self.cache_requests = Counter(
            "mcplane_cache_requests_total", "Result cache look-ups.", ["result"], registry=reg
        )
        self.budget_spent = Counter(
            "mcplane_budget_spent_total", "Budget units charged, by tool.", ["name"], registry=reg
        )
        self.circuit_state = Gauge(
            "mcplane_circuit_state",
            "Circuit breaker state per upstream endpoint: 0 closed, 1 half-open, 2 open.",
            ["upstream", "endpoint"],
            registry=reg,
            multiprocess_mode="livemax",
        )
        self.upstream_healthy = Gauge(
            "mcplane_upstream_healthy",
            "1 when the upstream passes its health checks, else 0.",
            ["upstream"],
            registry=reg,
            multiprocess_mode="livemin",
        )
        self.upstream_calls = Counter(
            "mcplane_upstream_calls_total",
            "Gateway attempts on an upstream endpoint: ok, tool_error, error, timeout, unavailable, cancelled.",
            ["upstream", "endpoint", "outcome"],
            registry=reg,
        )
        self.audit_sink_errors = Counter(
            "mcplane_audit_sink_errors_total", "Audit sink writes or pings that failed.", registry=reg
        )
        self.ready = Gauge(
            "mcplane_ready",
            "1 while the server is ready for calls, 0 otherwise.",
            registry=reg,
            multiprocess_mode="livemin",
        )
        self.fast_path_calls = Counter(
            "mcplane_fast_path_calls_total", "Calls answered on mcplane's hot path.", registry=reg
        )
        self.http_refusals = Counter(
            "mcplane_http_refusals_total",
            "Requests refused at the HTTP layer before the protocol, by status and reason code.",
            ["status", "reason"],
            registry=reg,
        )
        self.canary_rollbacks = Counter(
            "mcplane_canary_rollbacks_total",
            "Automatic rollbacks of a versioned tool's canary to its stable version (gateway).",
            ["tool"],
            registry=reg,
        )
        self.canary_weight = Gauge(
            "mcplane_canary_weight",
            "The canary's share of unpinned calls in force, per versioned tool (0 after a rollback).",
            ["tool"],
            registry=reg,
            multiprocess_mode="livemax",
        )
        self.rule_denials = Counter(
            "mcplane_rule_denials_total",
            "Calls denied by an authorization rule: it was false, or could not be evaluated (error, fail closed).",
            ["rule", "outcome"],
            registry=reg,
        )
        self.guard_hits = Counter(
            "mcplane_guard_hits_total",
            "Findings of output guards in tool results, by kind, and the action configured for it (mask, refuse).",
            ["kind", "action"],
            registry=reg,
        )
        self.tool_quarantined = Counter(
            "mcplane_gateway_tool_quarantined_total",
            "Upstream tools withheld by the gateway: definition changed, unpinned (lock mode) or injection (block).",
            ["upstream", "reason"],
            registry=reg,
        )
        self.tools_quarantined = Gauge(
            "mcplane_gateway_tools_quarantined",
            "Upstream tools the gateway withholds now, until approved.",
            ["upstream"],
            registry=reg,
            multiprocess_mode="livemax",
        )
        self.tool_findings = Counter(
            "mcplane_gateway_tool_findings_total",
            "Injection-scan findings in upstream tool definitions, by kind (counted once per new definition).",
            ["upstream", "kind"],
            registry=reg,
        )
        self.cache_hits = self.cache_requests.labels(result="hit")
        self.cache_misses = self.cache_requests.labels(result="miss")

    def before_collect(self, fold: Callable[[], None]) -> Callable[[], None]:
        """Run ``fold`` (under a lock shared by all folds) whenever the registry is collected, before
        these metrics are read: it carries plain counts into the metrics' children. Returns what
        removes it (running it a last time)."""
        return self._folds.add(fold)

    def set_circuit_state(self, upstream: str, endpoint: str, state: int) -> None:
        """For the gateway: 0 closed, 1 half-open, 2 open."""
        self.circuit_state.labels(upstream=upstream, endpoint=endpoint).set(state)

    def set_upstream_healthy(self, upstream: str, healthy: bool) -> None:
        self.upstream_healthy.labels(upstream=upstream).set(1 if healthy else 0)


_default: Metrics | None = None


def default_metrics() -> Metrics:
    """The process's metrics, in prometheus-client's default registry (created on first use).

    Creating them turns off prometheus-client's ``*_created`` series for the process: they
    double the number of series and no mcplane rule or dashboard reads them.
    """
    global _default
    if _default is None:
        from prometheus_client import disable_created_metrics

        disable_created_metrics()
        _default = Metrics()
    return _default


def _registry_to_scrape(registry: CollectorRegistry) -> CollectorRegistry:
    """``registry``, or in multiprocess mode a registry that reads every worker's files."""
    path = multiprocess_dir()
    if path is None:
        return registry
    from prometheus_client.multiprocess import MultiProcessCollector

    merged = CollectorRegistry()
    MultiProcessCollector(merged, path=path)
    return merged


async def scrape(registry: CollectorRegistry | None = None) -> tuple[bytes, str]:
    """The Prometheus text exposition and its content type (every worker's, in multiprocess mode)."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    if multiprocess_dir() is None:
        return generate_latest(registry if registry is not None else REGISTRY), CONTENT_TYPE_LATEST
    # Reading every worker's files is file I/O: keep it off the event loop.
    merged = _registry_to_scrape(REGISTRY)
    return await anyio.to_thread.run_sync(generate_latest, merged), CONTENT_TYPE_LATEST


def serve_metrics_port(host: str, port: int, registry: CollectorRegistry | None = None) -> Callable[[], None]:
    """Serve ``/metrics`` on its own port (a thread); returns the function that stops it."""
    from prometheus_client import start_http_server

    server, thread = start_http_server(port, addr=host, registry=_registry_to_scrape(registry or REGISTRY))

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop


class CounterSync:
    """Carries growing plain counters (``CacheStats``, the hot path's count) into Prometheus counters.

    Each source is read at the end of every call and at every scrape; only the growth since the
    last reading is added, so it works the same in multiprocess mode (each worker adds its own).
    """

    def __init__(self) -> None:
        self._sources: list[tuple[Callable[[], int], Any, list[int]]] = []
        self._lock = threading.Lock()

    def add(self, read: Callable[[], int], counter: Any) -> None:
        self._sources.append((read, counter, [read()]))

    def __bool__(self) -> bool:
        return bool(self._sources)

    def sync(self) -> None:
        with self._lock:  # a scrape on the metrics port's thread may sync while a call does
            for read, counter, last in self._sources:
                value = read()
                grown = value - last[0]
                if grown:
                    last[0] = value
                    if grown > 0:
                        counter.inc(grown)


class CountingBudgetStore:
    """A :class:`~mcplane.backends.budget.BudgetStore` that counts the units it charges, by tool."""

    def __init__(self, inner: BudgetStore, counter: Counter) -> None:
        self.inner = inner
        self._counter = counter

    def _count(self, decision: BudgetDecision, cost: int, *, forced: bool) -> BudgetDecision:
        if cost > 0 and (forced or decision.allowed):
            self._counter.labels(name=current_call_name.get() or UNKNOWN).inc(cost)
        return decision

    async def try_spend(self, key: str, cost: int, limit: int, window: float) -> BudgetDecision:
        return self._count(await self.inner.try_spend(key, cost, limit, window), cost, forced=False)

    async def try_spend_all(self, checks: Sequence[tuple[str, int]], cost: int, window: float) -> BudgetDecision:
        return self._count(await self.inner.try_spend_all(checks, cost, window), cost, forced=False)

    async def charge(self, checks: Sequence[tuple[str, int]], cost: int, window: float) -> BudgetDecision:
        return self._count(await self.inner.charge(checks, cost, window), cost, forced=True)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class CountingAuditSink:
    """An :class:`~mcplane.audit.sink.AuditSink` that counts its failed writes and pings.

    The audit writer shields sink calls from outside cancellation and bounds each with its
    write timeout, so a cancellation seen here is that timeout: it counts as a failure too.
    """

    def __init__(self, inner: AuditSink, counter: Counter) -> None:
        self.inner = inner
        self._counter = counter
        # The inner sink's ways to append without waiting, counted too (only those it has: the
        # writer looks for them by name).
        for name in ("append_nowait", "append_parts_nowait"):
            method = getattr(inner, name, None)
            if method is not None:
                setattr(self, name, self._counted(method))

    def _counted(self, method: Callable[..., Any]) -> Callable[..., Any]:
        counter = self._counter

        def counted(*args: Any) -> Any:
            try:
                return method(*args)
            except Exception:
                counter.inc()
                raise

        return counted

    @property
    def description(self) -> str:
        return self.inner.description

    async def append(self, entries: Sequence[Any]) -> list[dict[str, Any]]:
        try:
            return await self.inner.append(entries)
        except (Exception, anyio.get_cancelled_exc_class()):
            self._counter.inc()
            raise

    async def ping(self) -> None:
        try:
            await self.inner.ping()
        except (Exception, anyio.get_cancelled_exc_class()):
            self._counter.inc()
            raise

    async def read_lines(self) -> list[str]:
        return await self.inner.read_lines()

    async def aclose(self) -> None:
        await self.inner.aclose()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
