"""The metrics slot and ``/metrics``: every outcome counted under the contract names, in-process.

Each test gets fresh metrics in a registry of its own (the ``metrics`` fixture swaps the
process's default), so counts start at zero.
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from prometheus_client import CollectorRegistry

from mcplane import Plane
from mcplane.audit.jsonl import JsonlSink
from mcplane.backends.cache import CacheStats
from mcplane.config import PlaneConfig
from mcplane.errors import ConfigError
from mcplane.observability import metrics as metrics_module
from mcplane.observability.metrics import CounterSync, CountingAuditSink, Metrics, scrape
from mcplane.transports.http import HTTPApp, HTTPOptions
from tests.conftest import free_port
from tests.observability.support import modern_call, modern_headers

CONTRACT = {
    "mcplane_calls_total",
    "mcplane_call_duration_seconds",
    "mcplane_calls_in_flight",
    "mcplane_rate_limited_total",
    "mcplane_cache_requests_total",
    "mcplane_budget_spent_total",
    "mcplane_circuit_state",
    "mcplane_upstream_healthy",
    "mcplane_upstream_calls_total",
    "mcplane_audit_sink_errors_total",
    "mcplane_ready",
    "mcplane_fast_path_calls_total",
    "mcplane_canary_rollbacks_total",
    "mcplane_canary_weight",
}


@pytest.fixture
def metrics(monkeypatch: pytest.MonkeyPatch) -> Metrics:
    fresh = Metrics(CollectorRegistry())
    monkeypatch.setattr(metrics_module, "_default", fresh)
    return fresh


def value(metrics: Metrics, sample: str, **labels: str) -> float:
    found = metrics.registry.get_sample_value(sample, labels)
    return 0.0 if found is None else found


def calls(metrics: Metrics, name: str, status: str = "ok", code: str = "", kind: str = "tool") -> float:
    return value(metrics, "mcplane_calls_total", kind=kind, name=name, status=status, code=code)


def make_plane(config: dict[str, Any] | None = None) -> Plane:
    plane = Plane("metrics", config=PlaneConfig.model_validate(config or {}))

    @plane.tool()
    def add(a: int, b: int) -> int:
        return a + b

    @plane.tool()
    def boom() -> str:
        raise RuntimeError("crash")

    @plane.tool(rate_limit="1/minute")
    def scarce() -> str:
        return "ok"

    @plane.tool(cache_ttl="1m")
    def cached(key: str) -> str:
        return key

    @plane.tool(cost=3)
    def pricey() -> str:
        return "paid"

    @plane.resource("users://{user_id}")
    def user(user_id: str) -> str:
        return user_id

    @plane.prompt()
    def greet(name: str) -> str:
        return f"hello {name}"

    return plane


async def test_every_outcome_is_counted_and_timed(metrics: Metrics) -> None:
    plane = make_plane()
    with anyio.fail_after(10):
        async with Client(plane.sdk) as client:
            assert not (await client.call_tool("add", {"a": 1, "b": 2})).is_error
            assert not (await client.call_tool("add", {"a": 1, "b": 2})).is_error
            assert (await client.call_tool("boom", {})).is_error
            assert (await client.call_tool("add", {"a": "x"})).is_error
            await client.read_resource("users://42")
            await client.get_prompt("greet", {"name": "ada"})
    assert calls(metrics, "add") == 2
    assert calls(metrics, "boom", "error", "internal_error") == 1
    assert calls(metrics, "add", "error", "invalid_arguments") == 1
    assert value(metrics, "mcplane_call_duration_seconds_count", kind="tool", name="add") == 3
    assert value(metrics, "mcplane_call_duration_seconds_sum", kind="tool", name="add") > 0
    assert calls(metrics, "users://{user_id}", kind="resource") == 1, "a template, not each URI"
    assert calls(metrics, "greet", kind="prompt") == 1
    assert value(metrics, "mcplane_calls_in_flight", kind="tool") == 0


async def test_names_a_client_makes_up_share_one_series(metrics: Metrics) -> None:
    plane = make_plane()
    with anyio.fail_after(10):
        async with Client(plane.sdk) as client:
            for n in range(5):
                with pytest.raises(MCPError):
                    await client.call_tool(f"no_such_tool_{n}", {})
            with pytest.raises(MCPError):
                await client.read_resource("nowhere://x")
    assert calls(metrics, "(unknown)", "error", "not_found") == 5
    assert calls(metrics, "(unknown)", "error", "not_found", kind="resource") == 1
    names = {
        sample.labels["name"]
        for family in metrics.registry.collect()
        if family.name == "mcplane_calls"
        for sample in family.samples
    }
    assert names == {"(unknown)"}


async def test_rate_limits_cache_and_budget_are_counted(metrics: Metrics) -> None:
    plane = make_plane({"budget": {"limit": 1_000_000}})
    with anyio.fail_after(10):
        async with Client(plane.sdk) as client:
            assert not (await client.call_tool("scarce", {})).is_error
            assert (await client.call_tool("scarce", {})).is_error
            for _ in range(3):
                await client.call_tool("cached", {"key": "k"})
            await client.call_tool("pricey", {})
            await client.call_tool("pricey", {})
    assert value(metrics, "mcplane_rate_limited_total", name="scarce") == 1
    assert calls(metrics, "scarce", "error", "rate_limited") == 1
    assert value(metrics, "mcplane_cache_requests_total", result="miss") == 1
    assert value(metrics, "mcplane_cache_requests_total", result="hit") == 2
    assert value(metrics, "mcplane_budget_spent_total", name="pricey") == 6


async def test_a_call_in_flight_is_in_the_gauge(metrics: Metrics) -> None:
    plane = Plane("inflight")
    entered, release = anyio.Event(), anyio.Event()

    @plane.tool()
    async def slow() -> str:
        entered.set()
        await release.wait()
        return "done"

    with anyio.fail_after(10):
        async with Client(plane.sdk) as client, anyio.create_task_group() as tg:
            tg.start_soon(client.call_tool, "slow", {})
            await entered.wait()
            assert value(metrics, "mcplane_calls_in_flight", kind="tool") == 1
            release.set()
    assert value(metrics, "mcplane_calls_in_flight", kind="tool") == 0
    assert calls(metrics, "slow") == 1


async def test_audit_sink_failures_are_counted(metrics: Metrics, tmp_path: Any) -> None:
    class Broken(JsonlSink):
        async def append(self, entries: Any) -> list[dict[str, Any]]:
            raise OSError("disk gone")

    sink = CountingAuditSink(Broken(str(tmp_path / "audit.jsonl")), metrics.audit_sink_errors)
    with pytest.raises(OSError, match="disk gone"):
        await sink.append([{"x": 1}])
    assert value(metrics, "mcplane_audit_sink_errors_total") == 1
    assert sink.description == sink.inner.description


async def test_the_audit_layers_sink_is_counted(metrics: Metrics, tmp_path: Any) -> None:
    plane = make_plane({"audit": {"path": str(tmp_path / "audit.jsonl"), "fsync": "never"}})
    async with plane.lifespan():
        audit: Any = plane.pipeline.get("audit")
        assert isinstance(audit.writer.sink, CountingAuditSink)


async def test_audit_writes_that_fail_without_waiting_are_counted(
    metrics: Metrics, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sink's inline appends (the writer's way when nothing is queued) count their failures
    as ``append`` does, although the metrics wrap the sink after the writer was built."""
    plane = make_plane({"audit": {"path": str(tmp_path / "audit.jsonl"), "fsync": "never"}})
    async with plane.lifespan(), Client(plane.sdk) as client:
        assert not (await client.call_tool("add", {"a": 1, "b": 2})).is_error
        assert value(metrics, "mcplane_audit_sink_errors_total") == 0

        def failing_write(fd: int, data: Any) -> int:
            raise OSError(5, "I/O error")

        with monkeypatch.context() as patched:
            patched.setattr(os, "write", failing_write)
            refused = await client.call_tool("add", {"a": 1, "b": 2})
        assert refused.is_error
        assert value(metrics, "mcplane_audit_sink_errors_total") == 1


def test_the_counting_sink_offers_only_the_inline_appends_its_sink_has(metrics: Metrics, tmp_path: Any) -> None:
    class Plain:
        description = "plain"

    counted = CountingAuditSink(Plain(), metrics.audit_sink_errors)  # pyright: ignore[reportArgumentType]
    assert getattr(counted, "append_nowait", None) is None
    assert getattr(counted, "append_parts_nowait", None) is None
    jsonl = CountingAuditSink(JsonlSink(str(tmp_path / "audit.jsonl")), metrics.audit_sink_errors)
    assert callable(getattr(jsonl, "append_nowait", None))
    assert callable(getattr(jsonl, "append_parts_nowait", None))


def test_counter_sync_adds_only_the_growth(metrics: Metrics) -> None:
    stats = CacheStats(hits=5)
    sync = CounterSync()
    sync.add(lambda: stats.hits, metrics.cache_hits)
    sync.sync()
    assert value(metrics, "mcplane_cache_requests_total", result="hit") == 0, "what was there before is not counted"
    stats.hits += 3
    sync.sync()
    sync.sync()
    assert value(metrics, "mcplane_cache_requests_total", result="hit") == 3


@asynccontextmanager
async def serving(plane: Plane) -> AsyncIterator[httpx.AsyncClient]:
    app = HTTPApp(plane, HTTPOptions())
    async with app.running():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            yield http


async def test_metrics_endpoint_serves_the_contract_names(metrics: Metrics) -> None:
    plane = make_plane()
    async with serving(plane) as http:
        answer = await http.post("/mcp", json=modern_call("add", {"a": 2, "b": 3}), headers=modern_headers("add"))
        assert answer.json()["result"]["structuredContent"] == {"result": 5}
        assert (await http.get("/ready")).status_code == 200
        response = await http.get("/metrics", headers={"host": "10.1.2.3:8000"})  # a scrape by pod IP
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    text = response.text
    declared = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    assert declared >= CONTRACT
    assert 'mcplane_calls_total{code="",kind="tool",name="add",status="ok"} 1.0' in text
    assert "mcplane_fast_path_calls_total 1.0" in text, "the call took the hot path"
    assert "mcplane_ready 1.0" in text


async def test_the_default_registry_has_the_process_metrics() -> None:
    body, _ = await scrape()
    assert b"\nprocess_cpu_seconds_total " in body
    assert b"\nprocess_resident_memory_bytes " in body


async def test_circuit_and_upstream_gauges_are_ready_for_the_gateway(metrics: Metrics) -> None:
    metrics.set_circuit_state("billing", "http://b1/mcp", 2)
    metrics.set_upstream_healthy("billing", False)
    assert value(metrics, "mcplane_circuit_state", upstream="billing", endpoint="http://b1/mcp") == 2
    assert metrics.registry.get_sample_value("mcplane_upstream_healthy", {"upstream": "billing"}) == 0


async def test_metrics_off_is_404_and_counts_nothing(metrics: Metrics) -> None:
    plane = make_plane({"observability": {"metrics": {"enabled": False}}})
    async with serving(plane) as http:
        await http.post("/mcp", json=modern_call("add", {"a": 2, "b": 3}), headers=modern_headers("add"))
        response = await http.get("/metrics")
    assert response.status_code == 404
    assert calls(metrics, "add") == 0


async def test_metrics_on_a_port_of_their_own(metrics: Metrics) -> None:
    port = free_port()
    plane = make_plane({"observability": {"metrics": {"port": port, "host": "127.0.0.1"}}})
    async with serving(plane) as http:
        await http.post("/mcp", json=modern_call("add", {"a": 2, "b": 3}), headers=modern_headers("add"))
        assert (await http.get("/metrics")).status_code == 404, "not on the MCP port"
        async with httpx.AsyncClient(timeout=5.0) as scraper:
            response = await scraper.get(f"http://127.0.0.1:{port}/metrics")
    assert response.status_code == 200
    assert 'mcplane_calls_total{code="",kind="tool",name="add",status="ok"} 1.0' in response.text
    async with httpx.AsyncClient(timeout=2.0) as scraper:
        with pytest.raises(httpx.ConnectError):
            await scraper.get(f"http://127.0.0.1:{port}/metrics")  # stopped with the plane


async def test_a_metrics_port_in_use_stops_the_start_with_a_clear_error(metrics: Metrics) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        plane = make_plane({"observability": {"metrics": {"port": port, "host": "127.0.0.1"}}})
        with pytest.raises(ConfigError, match=rf"^cannot serve metrics on 127\.0\.0\.1:{port}: "):
            async with plane.lifespan():
                pass
