"""The metrics slot's plain counts: a scrape reads what counting every call in Prometheus gives.

The same calls (ok, tool errors, refusals, crashes; durations from an injected clock, in every
histogram bucket) go through a metrics slot counting in Prometheus per call (as in multiprocess
mode) and through one counting in plain numbers carried at each collection; the two expositions
must be the same text, and stay so over several scrapes with calls in between and in flight.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import anyio
import pytest
from mcp_types import CallToolResult, TextContent
from prometheus_client import CollectorRegistry, generate_latest

from mcplane.context import Context
from mcplane.errors import ERROR_META_KEY, RateLimited
from mcplane.observability import middleware as middleware_module
from mcplane.observability.metrics import BUCKETS, CounterSync, Metrics
from mcplane.observability.middleware import ObserveMiddleware
from mcplane.pipeline import Call

_CREATED = re.compile(rb"^(\S+_created\{?.*?\}?) \S+$", re.MULTILINE)


def _exposition(metrics: Metrics) -> bytes:
    """The scrape, without the ``*_created`` timestamps (the moments the series were made)."""
    return _CREATED.sub(rb"\1 T", generate_latest(metrics.registry))


class _Clock:
    """``time.perf_counter`` for the middleware: each call's duration is the next one given."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.durations: Iterator[float] = iter(())
        self.starting = True

    def perf_counter(self) -> float:
        if self.starting:
            self.starting = False
            return self.now
        self.starting = True
        self.now += next(self.durations)
        return self.now


def _durations() -> list[float]:
    below = [bound * 0.9 for bound in BUCKETS]
    return [*below, *BUCKETS, 31.0, 0.0, 1e-7, 123.456]  # every bucket, each bound exactly, beyond the last


async def _ok(call: Call) -> Any:
    return CallToolResult(content=[TextContent(type="text", text="fine")])


async def _tool_error(call: Call) -> Any:
    return CallToolResult(content=[], is_error=True, _meta={ERROR_META_KEY: {"code": "not_ours"}})


async def _refused(call: Call) -> Any:
    raise RateLimited("slow down")


async def _crash(call: Call) -> Any:
    raise RuntimeError("boom")


def _call(name: str) -> Call:
    return Call("tool", name, {}, Context(correlation_id="c"))


async def _run(middleware: ObserveMiddleware, clock: _Clock, rounds: int, served: list[int]) -> None:
    clock.now = 1000.0  # the same durations, to the last bit, for both slots
    for _ in range(rounds):
        for index, duration in enumerate(_durations()):
            provider = (_ok, _ok, _tool_error, _refused, _crash)[index % 5]
            clock.durations = iter([duration])
            served[0] += 1  # as the hot path counts a call before it runs
            try:
                await middleware(_call(("alpha", "beta")[index % 2]), provider)
            except (RateLimited, RuntimeError):
                pass


def _slot(monkeypatch: pytest.MonkeyPatch, *, plain: bool) -> tuple[ObserveMiddleware, Metrics, list[int]]:
    metrics = Metrics(CollectorRegistry())
    metrics.plain_counting = plain
    served = [0]
    sync = CounterSync()
    sync.add(lambda: served[0], metrics.fast_path_calls)
    return ObserveMiddleware(metrics, log_calls=False, sync=sync), metrics, served


async def test_a_scrape_reads_the_same_with_plain_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = _Clock()
    monkeypatch.setattr(middleware_module, "time", SimpleNamespace(perf_counter=clock.perf_counter))
    direct, direct_metrics, direct_served = _slot(monkeypatch, plain=False)
    plain, plain_metrics, plain_served = _slot(monkeypatch, plain=True)
    for rounds in (1, 3):
        for middleware, served in ((direct, direct_served), (plain, plain_served)):
            await _run(middleware, clock, rounds, served)
        assert _exposition(plain_metrics) == _exposition(direct_metrics)

    # Calls in flight at the scrape count as in flight in both.
    release = anyio.Event()
    entered = 0
    all_in = anyio.Event()

    async def held(call: Call) -> Any:
        nonlocal entered
        entered += 1
        if entered == 6:
            all_in.set()
        await release.wait()
        return await _ok(call)

    clock.durations = iter([0.001] * 6)
    async with anyio.create_task_group() as group:
        for middleware in (direct, plain, direct, plain, direct, plain):
            group.start_soon(middleware, _call("alpha"), held)
        await all_in.wait()
        in_flight = _exposition(plain_metrics)
        assert in_flight == _exposition(direct_metrics)
        assert b'mcplane_calls_in_flight{kind="tool"} 3.0' in in_flight
        release.set()
    assert _exposition(plain_metrics) == _exposition(direct_metrics)


async def test_plain_counts_take_no_prometheus_increment_per_ok_call(monkeypatch: pytest.MonkeyPatch) -> None:
    metrics = Metrics(CollectorRegistry())
    middleware = ObserveMiddleware(metrics, log_calls=False)
    for _ in range(5):
        await middleware(_call("alpha"), _ok)
    child = metrics.calls.labels(kind="tool", name="alpha", status="ok", code="")
    assert child._value.get() == 0, "counted in Prometheus per call"  # pyright: ignore[reportPrivateUsage, reportAttributeAccessIssue, reportUnknownMemberType]
    labels = {"kind": "tool", "name": "alpha", "status": "ok", "code": ""}
    assert metrics.registry.get_sample_value("mcplane_calls_total", labels) == 5


async def test_calls_on_another_thread_count_in_prometheus_directly() -> None:
    metrics = Metrics(CollectorRegistry())
    middleware = ObserveMiddleware(metrics, log_calls=False)
    await middleware(_call("alpha"), _ok)  # this thread owns the series' plain counts

    def elsewhere() -> None:
        anyio.run(middleware, _call("alpha"), _ok)

    worker = threading.Thread(target=elsewhere)
    worker.start()
    worker.join(10)
    child = metrics.calls.labels(kind="tool", name="alpha", status="ok", code="")
    assert child._value.get() == 1  # pyright: ignore[reportPrivateUsage, reportAttributeAccessIssue, reportUnknownMemberType]
    labels = {"kind": "tool", "name": "alpha", "status": "ok", "code": ""}
    assert metrics.registry.get_sample_value("mcplane_calls_total", labels) == 2
    assert metrics.registry.get_sample_value("mcplane_calls_in_flight", {"kind": "tool"}) == 0


async def test_a_closed_slot_carries_its_counts_and_leaves_the_collections() -> None:
    metrics = Metrics(CollectorRegistry())
    middleware = ObserveMiddleware(metrics, log_calls=False)
    await middleware(_call("alpha"), _ok)
    middleware.close()
    child = metrics.calls.labels(kind="tool", name="alpha", status="ok", code="")
    assert child._value.get() == 1  # pyright: ignore[reportPrivateUsage, reportAttributeAccessIssue, reportUnknownMemberType]
    assert metrics._folds._folds == []  # pyright: ignore[reportPrivateUsage]
    middleware.close()  # idempotent
    await middleware(_call("alpha"), _ok)  # after the close: counted in Prometheus at once
    assert child._value.get() == 2  # pyright: ignore[reportPrivateUsage, reportAttributeAccessIssue, reportUnknownMemberType]
    labels = {"kind": "tool", "name": "alpha", "status": "ok", "code": ""}
    assert metrics.registry.get_sample_value("mcplane_calls_total", labels) == 2
