"""The drain gate and the HTTP tier while draining, in-process (real processes: tests/e2e/test_shutdown.py)."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult

from mcplane import Plane
from mcplane.middleware.errors import ErrorsMiddleware
from mcplane.observability import DrainGate, Lifecycle
from mcplane.pipeline import Call
from mcplane.transports.http import HTTPApp, HTTPOptions
from tests.conftest import error_of
from tests.observability.support import MODERN, modern_call, modern_headers


def make_plane() -> tuple[Plane, anyio.Event, anyio.Event]:
    plane = Plane("drained")
    entered, release = anyio.Event(), anyio.Event()

    @plane.tool()
    async def slow() -> str:
        entered.set()
        await release.wait()
        return "done"

    @plane.tool()
    def add(a: int, b: int) -> int:
        return a + b

    @plane.tool()
    async def nested() -> str:
        """Makes a call of its own through the plane once released (the test drains first)."""
        entered.set()
        await release.wait()
        inner = await plane.dispatch(Call("tool", "add", {"a": 1, "b": 2}, plane.make_context(None, None)))
        assert isinstance(inner, CallToolResult)
        return str(inner.structured_content)

    @plane.resource("config://app")
    def config() -> str:
        return "{}"

    return plane, entered, release


def _code(result: CallToolResult) -> str:
    assert result.is_error
    return error_of(result)["code"]


async def test_draining_refuses_new_calls_and_lets_those_in_flight_finish() -> None:
    plane, entered, release = make_plane()
    lifecycle = Lifecycle(plane, "test", grace=10)
    gate = lifecycle.install()
    results: list[CallToolResult] = []
    with anyio.fail_after(10):
        async with Client(plane.sdk) as client, anyio.create_task_group() as tg:

            async def hold() -> None:
                results.append(await client.call_tool("slow", {}))

            tg.start_soon(hold)
            await entered.wait()
            assert gate.in_flight == 1
            lifecycle.begin_drain("SIGTERM")
            refused = await client.call_tool("add", {"a": 1, "b": 2})
            assert _code(refused) == "dependency_unavailable"
            assert error_of(refused)["retryable"] is True
            with pytest.raises(MCPError) as resource:
                await client.read_resource("config://app")
            assert resource.value.error.data["code"] == "dependency_unavailable"

            tg.start_soon(lifecycle.drain)
            release.set()
    assert results[0].structured_content == {"result": "done"}
    assert gate.in_flight == 0
    lifecycle.uninstall()
    assert isinstance(plane.pipeline.get("errors"), ErrorsMiddleware)


async def test_a_call_made_by_a_call_in_flight_is_never_refused() -> None:
    plane, entered, release = make_plane()
    lifecycle = Lifecycle(plane, "test", grace=10)
    lifecycle.install()
    outcome: list[CallToolResult] = []
    with anyio.fail_after(10):
        async with Client(plane.sdk) as client, anyio.create_task_group() as tg:

            async def hold() -> None:
                outcome.append(await client.call_tool("nested", {}))

            tg.start_soon(hold)
            await entered.wait()
            lifecycle.begin_drain()
            release.set()  # now the call in flight makes its own call
    assert outcome[0].structured_content == {"result": "{'result': 3}"}


async def test_past_the_grace_period_calls_are_cut_short_with_a_clear_error() -> None:
    plane, entered, _ = make_plane()
    lifecycle = Lifecycle(plane, "test", grace=0.05)
    lifecycle.install()
    results: list[CallToolResult] = []
    with anyio.fail_after(10):
        async with Client(plane.sdk) as client, anyio.create_task_group() as tg:

            async def hold() -> None:
                results.append(await client.call_tool("slow", {}))

            tg.start_soon(hold)
            await entered.wait()
            await lifecycle.drain()
    assert _code(results[0]) == "dependency_unavailable"
    assert error_of(results[0])["message"] == "the server shut down before the call finished"


async def test_a_forced_drain_does_not_wait_for_the_grace_period() -> None:
    plane, entered, _ = make_plane()
    lifecycle = Lifecycle(plane, "test", grace=60)
    lifecycle.install()
    with anyio.fail_after(10):
        async with Client(plane.sdk) as client, anyio.create_task_group() as tg:
            tg.start_soon(client.call_tool, "slow", {})
            await entered.wait()
            lifecycle.force()
            await lifecycle.drain()


async def test_the_gate_wraps_the_errors_slot_once() -> None:
    plane, _, _ = make_plane()
    first = Lifecycle(plane, "a").install()
    assert Lifecycle(plane, "b").install() is first
    assert isinstance(first, DrainGate)


async def test_the_http_tier_refuses_new_work_while_draining_and_lets_the_rest_through() -> None:
    plane, _, _ = make_plane()
    app = HTTPApp(plane, HTTPOptions())
    transport = httpx.ASGITransport(app=app)
    async with app.running(), httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        app.draining = True
        ready = await http.get("/ready")
        assert (ready.status_code, ready.json()["checks"]) == (503, {"server": "draining"})

        refused = await http.post("/mcp", json=modern_call("add", {"a": 1, "b": 2}, 7), headers=modern_headers("add"))
        assert (refused.status_code, refused.headers["retry-after"]) == (503, "1")
        body: dict[str, Any] = refused.json()
        assert body["id"] == 7
        assert body["error"]["data"] == {
            "code": "dependency_unavailable",
            "message": "the server is shutting down; retry on another instance",
            "retryable": True,
            "retry_after_ms": 1000,
        }

        meta = modern_call("x", {})["params"]["_meta"]
        headers = {**modern_headers("x"), "mcp-method": "tools/list"}
        del headers["mcp-name"]
        listing = await http.post(
            "/mcp",
            json={"jsonrpc": "2.0", "id": 8, "method": "tools/list", "params": {"_meta": meta}},
            headers=headers,
        )
        assert listing.status_code == 200, "a list is not new work: a client may need it to finish a call"

        stream = await http.get("/mcp", headers={"accept": "text/event-stream", "mcp-protocol-version": MODERN})
        assert stream.status_code == 503
