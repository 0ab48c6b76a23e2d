"""The ``metrics`` slot: time, count and log every call.

It sits inside ``errors`` and ``tracing`` and outside everything else, so it sees each call's
true outcome before the errors slot turns it into an answer: a result (``ok``, or ``error``
with the code a tool result carries in ``_meta["mcplane/error"].code``) or an exception (its
stable code: ``rate_limited``, ``forbidden``, ``timeout``, ``cancelled``, ...).

Per call it updates ``mcplane_calls_in_flight``, ``mcplane_calls_total``,
``mcplane_call_duration_seconds`` and, for refusals by the rate limit,
``mcplane_rate_limited_total``; then it writes one ``call`` event to the ``mcplane.calls``
logger (when INFO is enabled there). The label series of each known name is looked up once and
kept, so a call costs a dict hit and a few increments.

Those increments are plain numbers on the thread that serves the calls (the event loop's): calls
started and ended, ``ok`` calls, one count per histogram bucket. They are carried into the
Prometheus children whenever the registry is collected (:meth:`Metrics.before_collect
<mcplane.observability.metrics.Metrics.before_collect>`), so a scrape reads what counting each
call in Prometheus would have given, at a fraction of the cost (each Prometheus increment takes
a lock). The duration's sum is added to its child per call, so it is the same float. Calls on
another thread, errors, and multiprocess mode (where a scrape reads other workers' files) count
in Prometheus directly.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry.trace import get_current_span

from mcplane import errors
from mcplane.audit.entry import error_code_of, result_code
from mcplane.observability.logs import CALL_LOGGER, EVENT_KEY
from mcplane.observability.metrics import UNKNOWN, CounterSync, Metrics, current_call_name
from mcplane.pipeline import Call, CallNext
from mcplane.sdk_adapter.context import server_of
from mcplane.sdk_adapter.mcpserver import local_prompt, local_resource, local_tool

__all__ = ["ObserveMiddleware", "series_name", "trace_id"]

KNOWN_CODES = frozenset(
    {
        cls.code
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.MCPlaneError) and cls is not errors.ConfigError
    }
    | {"tool_error", "cancelled", "protocol_error"}
)
"""Codes kept as label values; any other code a tool puts in its result counts as ``tool_error``."""

_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")


def series_name(call: Call) -> str:
    """The ``name`` label for ``call``: a name the server knows, never one a client invented."""
    if call.source.upstream is not None:
        return call.name
    sdk: Any = server_of(call.context)
    if sdk is None:
        return call.name  # a context made by hand (in-process tests): nothing to check against
    if call.kind == "tool":
        return call.name if local_tool(sdk, call.name) is not None else UNKNOWN
    if call.kind == "prompt":
        return call.name if local_prompt(sdk, call.name) is not None else UNKNOWN
    served = local_resource(sdk, call.name)  # a traversal attempt (``..``) is served by nothing
    return served if served is not None else UNKNOWN


class _Series:
    """The label children of one ``(kind, name)``, and its plain counts not yet carried into them."""

    __slots__ = (
        "bounds",
        "buckets",
        "carried_buckets",
        "carried_in_flight",
        "carried_ok",
        "duration",
        "duration_sum",
        "ended",
        "errors",
        "in_flight",
        "label",
        "ok",
        "ok_count",
        "owner",
        "rate_limited",
        "started",
    )

    def __init__(self, metrics: Metrics, kind: str, label: str) -> None:
        self.label = label
        self.in_flight = metrics.in_flight.labels(kind=kind)
        self.duration = metrics.duration.labels(kind=kind, name=label)
        self.ok = metrics.calls.labels(kind=kind, name=label, status="ok", code="")
        self.errors: dict[str, Any] = {}
        self.rate_limited: Any = None
        self.owner = threading.get_ident() if metrics.plain_counting else None
        """The thread whose calls count in the plain numbers below (``None``: none do)."""
        self.bounds: tuple[float, ...] = tuple(self.duration._upper_bounds)  # pyright: ignore[reportPrivateUsage, reportAttributeAccessIssue, reportUnknownArgumentType, reportUnknownMemberType]
        self.duration_sum = self.duration._sum  # pyright: ignore[reportPrivateUsage, reportAttributeAccessIssue, reportUnknownMemberType]
        self.started = 0
        self.ended = 0
        self.ok_count = 0
        self.buckets = [0] * len(self.bounds)
        self.carried_in_flight = 0
        self.carried_ok = 0
        self.carried_buckets = [0] * len(self.bounds)
        """What :meth:`carry` has added so far (calls in flight, ``ok`` calls, bucket counts)."""

    def carry(self) -> None:
        """Add what was counted in plain numbers since the last carry to the Prometheus children."""
        in_flight = self.started - self.ended
        if in_flight != self.carried_in_flight:
            self.in_flight.inc(in_flight - self.carried_in_flight)
            self.carried_in_flight = in_flight
        ok = self.ok_count
        if ok != self.carried_ok:
            self.ok.inc(ok - self.carried_ok)
            self.carried_ok = ok
        children = self.duration._buckets  # pyright: ignore[reportPrivateUsage, reportAttributeAccessIssue, reportUnknownMemberType, reportUnknownVariableType]
        done = self.carried_buckets
        for index, count in enumerate(self.buckets):
            if count != done[index]:
                children[index].inc(count - done[index])  # pyright: ignore[reportUnknownMemberType]
                done[index] = count


class ObserveMiddleware:
    """Metrics and one log event per call. ``metrics=None`` logs only; ``log_calls=False`` counts only."""

    def __init__(
        self,
        metrics: Metrics | None,
        *,
        log_calls: bool = True,
        sync: CounterSync | None = None,
        count_budget: bool = False,
    ) -> None:
        self.metrics = metrics
        self.log_calls = log_calls
        self.sync = sync if sync else None
        self.count_budget = count_budget
        self._series: dict[tuple[str, str], _Series] = {}
        self._by_label: dict[tuple[str, str], _Series] = {}
        self._unfold: Callable[[], None] | None = None
        if metrics is not None and metrics.plain_counting:
            self._unfold = metrics.before_collect(self.carry)

    def close(self) -> None:
        """Carry the plain counts a last time and stop carrying at collections (the layers close);
        a call after this counts in Prometheus directly."""
        if self._unfold is not None:
            self._unfold()
            self._unfold = None

    def carry(self) -> None:
        """Carry every series' plain counts into Prometheus (run before each collection)."""
        for series in list(self._by_label.values()):
            series.carry()
        if self.sync is not None:
            self.sync.sync()

    async def __call__(self, call: Call, call_next: CallNext) -> Any:
        series = self._series.get((call.kind, call.name)) if self.metrics is not None else None
        if series is None and self.metrics is not None:
            series = self._new_series(call)
        plain = series is not None and series.owner == threading.get_ident() and self._unfold is not None
        if plain:
            series.started += 1  # pyright: ignore[reportOptionalMemberAccess]
        elif series is not None:
            series.in_flight.inc()
        token = current_call_name.set(call.name) if self.count_budget else None
        code: str | None = None
        started = time.perf_counter()
        try:
            result = await call_next(call)
            code = result_code(result)
            return result
        except BaseException as exc:
            code = error_code_of(exc)
            raise
        finally:
            elapsed = time.perf_counter() - started
            if token is not None:
                current_call_name.reset(token)
            if plain and self._unfold is not None:  # (a call in flight when the slot closed: counted directly)
                self._count_plain(series, call.kind, elapsed, code)  # pyright: ignore[reportArgumentType]
            elif series is not None:
                self._count(series, call.kind, elapsed, code)
            if self.log_calls and CALL_LOGGER.isEnabledFor(logging.INFO):
                _log_call(call, elapsed, code)

    def _new_series(self, call: Call) -> _Series:
        assert self.metrics is not None
        label = series_name(call)
        series = self._by_label.get((call.kind, label))
        if series is None:
            series = self._by_label[(call.kind, label)] = _Series(self.metrics, call.kind, label)
        if label == call.name:  # bounded: only names the server knows are kept
            self._series[(call.kind, call.name)] = series
        return series

    def _count_plain(self, series: _Series, kind: str, elapsed: float, code: str | None) -> None:
        """:meth:`_count` on the series' own thread: plain numbers, carried at each collection (so is
        :attr:`sync`)."""
        series.ended += 1
        series.duration_sum.inc(elapsed)
        series.buckets[bisect_left(series.bounds, elapsed)] += 1  # the first bound >= elapsed, as observe()
        if code is None:
            series.ok_count += 1
        else:
            self._count_error(series, kind, code)

    def _count(self, series: _Series, kind: str, elapsed: float, code: str | None) -> None:
        series.in_flight.dec()
        series.duration.observe(elapsed)
        if code is None:
            series.ok.inc()
        else:
            self._count_error(series, kind, code)
        if self.sync is not None:
            self.sync.sync()

    def _count_error(self, series: _Series, kind: str, code: str) -> None:
        label = code if code in KNOWN_CODES else "tool_error"
        counter = series.errors.get(label)
        if counter is None:
            assert self.metrics is not None
            counter = series.errors[label] = self.metrics.calls.labels(
                kind=kind, name=series.label, status="error", code=label
            )
        counter.inc()
        if label == "rate_limited":
            if series.rate_limited is None:
                assert self.metrics is not None
                series.rate_limited = self.metrics.rate_limited.labels(name=series.label)
            series.rate_limited.inc()


def sdk_request_context(ctx: Any) -> Any:
    """The SDK's request context (a pydantic private attribute of the SDK's ``Context``), or ``None``."""
    private = getattr(ctx, "__pydantic_private__", None)
    return private.get("_request_context") if isinstance(private, dict) else None


def _log_call(call: Call, elapsed: float, code: str | None) -> None:
    ctx = call.context
    principal = ctx.principal  # a slot read (see :mod:`mcplane.context`)
    event: dict[str, Any] = {
        "event": "call",
        "kind": call.kind,
        "name": call.name,
        "subject": principal.subject,
        "tenant": principal.tenant,
        "duration_ms": round(elapsed * 1000, 3),
        "status": "ok" if code is None else "error",
        "code": code,
        "trace_id": trace_id(ctx),
        "correlation_id": ctx.correlation_id,
    }
    upstream = call.source.upstream
    if upstream is not None:
        event["upstream"] = str(upstream)
    # Logger.info would also look up the caller's file and line, which no event shows.
    record = CALL_LOGGER.makeRecord(CALL_LOGGER.name, logging.INFO, "", 0, "call", (), None, extra={EVENT_KEY: event})
    CALL_LOGGER.handle(record)


def trace_id(ctx: Any) -> str | None:
    """The call's trace id: the current span's, else the caller's ``traceparent`` (``_meta``, then header)."""
    span_context = get_current_span().get_span_context()
    if span_context.is_valid:
        return format(span_context.trace_id, "032x")
    meta, scope = ctx.request_meta, ctx.scope
    raw: Any = meta.get("traceparent") if isinstance(meta, Mapping) else None
    if raw is None and isinstance(scope, Mapping):
        raw = next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"traceparent"), None)
    if not isinstance(raw, str):
        return None
    match = _TRACEPARENT.match(raw.strip().lower())
    return match.group(1) if match and match.group(1) != "0" * 32 else None
