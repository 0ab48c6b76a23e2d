"""Deadlines, retries, breakers and fast failure against real upstream processes."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml
from mcp import Client

from mcplane import Plane
from mcplane.gateway import Gateway
from tests.conftest import REPO_ROOT, STOP_TIMEOUT, error_of, free_port
from tests.gateway.conftest import UPSTREAM_APP, NodeServer, error_code, text_of, wait_for_port


def _stdio_upstream(**options: Any) -> dict[str, Any]:
    command = {
        "command": sys.executable,
        "args": ["-m", "mcplane.cli", "run", str(UPSTREAM_APP)],
        "cwd": str(REPO_ROOT),
    }
    return {"endpoints": [command], **options}


def _plane(upstreams: dict[str, Any], **server: Any) -> Plane:
    return Gateway.from_config({"server": {"default_timeout": "10s", **server}, "upstreams": upstreams})


async def test_deadline_and_trace_context_travel_upstream() -> None:
    plane = _plane({"up": _stdio_upstream()})
    async with Client(plane.sdk, mode="legacy") as client:
        result = await client.call_tool("up__remaining_ms", {}, meta={"mcplane/timeout_ms": 4000})
        assert 0 < int(text_of(result)) <= 4000
        parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        traced = await client.call_tool("up__traceparent", {}, meta={"traceparent": parent})
        assert "0af7651916cd43dd8448eb211c80319c" in text_of(traced)


async def test_hung_upstream_is_bounded_by_the_callers_deadline() -> None:
    plane = _plane({"up": _stdio_upstream()})
    async with Client(plane.sdk, mode="legacy") as client:
        started = time.monotonic()
        result = await client.call_tool("up__hang_write", {}, meta={"mcplane/timeout_ms": 300})
        assert error_code(result) == "deadline_exceeded"
        assert time.monotonic() - started < 2


async def test_upstream_timeout_answers_timeout() -> None:
    plane = _plane({"up": _stdio_upstream(timeout="300ms")})
    async with Client(plane.sdk, mode="legacy") as client:
        started = time.monotonic()
        assert error_code(await client.call_tool("up__hang_write", {})) == "timeout"
        assert time.monotonic() - started < 2


async def test_retries_only_read_only_tools_then_the_breaker_opens() -> None:
    upstream = _stdio_upstream(
        retries={"attempts": 3, "backoff": "1ms", "attempt_timeout": "200ms"},
        breaker={"failures": 3, "cool_down": "60s"},
    )
    plane = _plane({"up": upstream})
    async with Client(plane.sdk, mode="legacy") as client:
        write = await client.call_tool("up__hang_write", {}, meta={"mcplane/timeout_ms": 2000})
        assert error_code(write) == "timeout"  # one attempt timed out; not retried
        assert text_of(await client.call_tool("up__attempts_of", {"name": "hang_write"})) == "1"

        read = await client.call_tool("up__hang_read", {}, meta={"mcplane/timeout_ms": 5000})
        assert error_code(read) == "timeout"
        # hang_write's failure + 2 of hang_read's opened the circuit: the third attempt was refused.
        started = time.monotonic()
        refused = await client.call_tool("up__add", {"a": 1, "b": 2})
        assert error_code(refused) == "circuit_open"
        assert time.monotonic() - started < 0.5
        body: Any = {"error": error_of(refused)}
        assert body["error"]["retryable"] is True
        assert body["error"]["retry_after_ms"] > 0
        upstream_state = Gateway.provider_of(plane).status()["up"][0]
        assert upstream_state["breaker"] == "open"


async def test_depends_on_fails_fast_naming_the_dependency() -> None:
    dead = {"endpoints": [{"url": "http://127.0.0.1:9/mcp"}], "connect_timeout": "2s", "restart": {"initial": "5s"}}
    plane = _plane({"up": _stdio_upstream(depends_on={"add": ["billing"]}), "billing": dead})
    async with Client(plane.sdk, mode="legacy") as client:
        started = time.monotonic()
        result = await client.call_tool("up__add", {"a": 1, "b": 2})
        assert error_code(result) == "dependency_unavailable"
        body: Any = {"error": error_of(result)}
        assert body["error"]["details"] == {"dependency": "billing"}
        assert time.monotonic() - started < 0.5
        assert text_of(await client.call_tool("up__attempts_of", {"name": "x"})) == "0"  # others unaffected


async def test_killed_http_upstream_fails_fast_then_recovers(everything_http: NodeServer) -> None:
    upstream = {
        "endpoints": [{"url": everything_http.url}],
        "mode": "legacy",
        "restart": {"initial": "50ms", "max": "200ms"},
        "health_check": {"interval": "200ms"},
    }
    plane = _plane({"everything": upstream})
    endpoint = Gateway.provider_of(plane).upstreams["everything"].endpoints[0]
    async with Client(plane.sdk, mode="legacy") as client:
        for _ in range(3):
            assert text_of(await client.call_tool("everything__echo", {"message": "a"})) == "Echo: a"
        assert endpoint.connections == 1  # one session, reused by every call

        everything_http.kill()
        started = time.monotonic()
        failed = await client.call_tool("everything__echo", {"message": "b"})
        assert error_code(failed) == "dependency_unavailable"
        again = await client.call_tool("everything__echo", {"message": "b"})
        assert error_code(again) in ("dependency_unavailable", "circuit_open")
        assert time.monotonic() - started < 2

        everything_http.start()  # same port: the supervisor reconnects with backoff
        with anyio.fail_after(15):
            while True:
                result = await client.call_tool("everything__echo", {"message": "c"})
                if not result.is_error:
                    break
                await anyio.sleep(0.05)  # polling under the fail_after bound
        assert text_of(result) == "Echo: c"
        assert endpoint.connections == 2


def _gateway_process(config: Path, port: int, stderr: Path) -> subprocess.Popen[bytes]:
    """``mcplane gateway --config CONFIG --port PORT`` (HTTP), its stderr in ``stderr``."""
    with stderr.open("wb") as errlog:
        return subprocess.Popen(
            [sys.executable, "-m", "mcplane.gateway.cli", "--config", str(config), "--port", str(port)],
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=errlog,
        )


@pytest.mark.parametrize("tool", ["hang_write", "stops_early"])
async def test_a_call_bound_by_the_upstream_timeout_answers_timeout_whichever_hop_fires_first(
    tmp_path: Path, tool: str
) -> None:
    """A gateway whose upstream ``timeout`` bounds the call, in front of a gateway process in front
    of a tool that never answers (``hang_write``: the outer timer usually fires first) or of a hop
    that says ``deadline_exceeded`` before the deadline it was passed (``stops_early``: the inner
    timer fires first): every answer is ``timeout`` and every attempt counts as one, for the
    breaker and in ``mcplane_upstream_calls_total``."""
    from prometheus_client import CollectorRegistry

    from mcplane.observability import metrics as metrics_module
    from mcplane.observability.metrics import Metrics

    inner = tmp_path / "inner.yaml"
    inner_upstream = {**_stdio_upstream(timeout="20s"), "breaker": {"failures": 1000}}
    inner.write_text(yaml.safe_dump({"server": {"default_timeout": "30s"}, "upstreams": {"up": inner_upstream}}))
    port = free_port()
    proc = _gateway_process(inner, port, tmp_path / "inner.stderr")
    fresh = Metrics(CollectorRegistry())
    saved, metrics_module._default = metrics_module._default, fresh  # pyright: ignore[reportPrivateUsage]
    try:
        wait_for_port(port, proc)
        outer = {
            "endpoints": [{"url": f"http://127.0.0.1:{port}/mcp"}],
            "timeout": "1s",
            "retries": {"attempts": 1},
            "breaker": {"failures": 1000},
        }
        plane = _plane({"inner": outer}, default_timeout="30s")
        codes: list[str | None] = []
        async with Client(plane.sdk, mode="legacy") as client:

            async def call() -> None:
                codes.append(error_code(await client.call_tool(f"inner__up__{tool}", {})))

            async with anyio.create_task_group() as tg:
                for _ in range(24):
                    tg.start_soon(call)
            outcomes: Counter[str] = Counter()
            for metric in fresh.registry.collect():
                for sample in metric.samples:
                    if sample.name == "mcplane_upstream_calls_total" and sample.labels["upstream"] == "inner":
                        outcomes[sample.labels["outcome"]] += int(sample.value)
            breaker = Gateway.provider_of(plane).upstreams["inner"].endpoints[0].breaker
            failures = breaker._consecutive  # pyright: ignore[reportPrivateUsage]
    finally:
        metrics_module._default = saved  # pyright: ignore[reportPrivateUsage]
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT)
    assert Counter(codes) == {"timeout": 24}
    assert outcomes == {"timeout": 24}
    assert failures == 24


async def test_an_attempt_cut_short_by_the_deadline_timer_is_a_timeout_though_its_clock_says_a_hair_is_left(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The timeout slot's timer runs on the event loop's clock and the deadline on ``time.monotonic``:
    a call cancelled at its deadline may see a few microseconds left. It is still that attempt's
    timeout (a failure for the breaker), never a cancellation the caller asked for."""
    from types import SimpleNamespace

    from prometheus_client import CollectorRegistry

    import mcplane.context
    from mcplane.gateway.config import UpstreamConfig
    from mcplane.gateway.upstream import Upstream
    from mcplane.observability.metrics import Metrics

    now = 1000.0
    monkeypatch.setattr(mcplane.context, "time", SimpleNamespace(monotonic=lambda: now))
    upstream = Upstream("up", UpstreamConfig.model_validate({"endpoints": [{"url": "http://127.0.0.1:9/mcp"}]}))
    upstream.metrics = metrics = Metrics(CollectorRegistry())
    (endpoint,) = upstream.endpoints
    endpoint.sdk = SimpleNamespace(protocol_version="2025-11-25")  # pyright: ignore[reportAttributeAccessIssue]
    ctx = Plane("t").make_context(None, None)
    ctx = ctx.replace(deadline=now + 0.002)
    started = anyio.Event()

    async def send(link: Any, meta: dict[str, Any]) -> Any:
        started.set()
        await anyio.sleep_forever()

    async def call() -> None:
        await upstream.request(send, ctx, retry=False, what="tools/call 'x'")

    async with anyio.create_task_group() as tg:
        tg.start_soon(call)
        await started.wait()
        tg.cancel_scope.cancel()  # the timer fired: 2 ms "left" on the other clock
    label = endpoint.label
    outcome = metrics.registry.get_sample_value(
        "mcplane_upstream_calls_total", {"upstream": "up", "endpoint": label, "outcome": "timeout"}
    )
    assert outcome == 1
    assert endpoint.breaker._consecutive == 1  # pyright: ignore[reportPrivateUsage]
