"""Deadlines, retries, breakers and fast failure against real upstream processes."""

from __future__ import annotations

import sys
import time
from typing import Any

import anyio
from mcp import Client

from mcplane import Plane
from mcplane.gateway import Gateway
from tests.conftest import REPO_ROOT, error_of
from tests.gateway.conftest import UPSTREAM_APP, NodeServer, error_code, text_of


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
