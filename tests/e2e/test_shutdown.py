"""Graceful shutdown over real processes: SIGTERM with calls in flight on HTTP, WebSocket and stdio.

The ops app's ``wait_for(path)`` tool runs until the test creates ``path``, so a call can be held
in flight across the signal. Each test checks the same contract: readiness flips and new calls
are refused with ``dependency_unavailable`` at once, the calls in flight finish (or, past the
grace period, are answered with a clear error), and the process exits 0.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream
from mcp import Client
from mcp_types import CallToolResult
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from mcplane import websocket_client
from tests.conftest import (
    REPO_ROOT,
    STOP_TIMEOUT,
    ServerProcess,
    error_of,
    mcplane_command,
    start_server,
    wire_error_of,
)
from tests.observability.support import (
    OPS_APP,
    eventually,
    lifecycle,
    modern_call,
    modern_headers,
    started,
)

MODERN = "2026-07-28"


def _error_code(result: CallToolResult) -> str:
    assert result.is_error, result
    return error_of(result)["code"]


async def _draining(server: ServerProcess) -> None:
    await eventually(lambda: True if "draining" in lifecycle(server.stderr()) else None, what="draining")


async def _exit_code(proc: subprocess.Popen[bytes]) -> int:
    return await anyio.to_thread.run_sync(lambda: proc.wait(timeout=STOP_TIMEOUT))


async def test_sigterm_lets_http_and_websocket_calls_finish_and_refuses_new_ones(tmp_path: Path) -> None:
    server = start_server(OPS_APP, tmp_path=tmp_path)
    holds = {key: tmp_path / key for key in ("fast", "sdk", "ws")}
    results: dict[str, CallToolResult] = {}
    try:
        async with (
            Client(server.url, mode=MODERN) as http_client,
            Client(websocket_client(server.ws_url), mode=MODERN) as ws_client,  # pyright: ignore[reportArgumentType]
            anyio.create_task_group() as tg,
        ):

            async def hold(client: Client, tool: str, key: str) -> None:
                results[key] = await client.call_tool(tool, {"path": str(holds[key])})

            tg.start_soon(hold, http_client, "wait_for", "fast")  # the hot path
            tg.start_soon(hold, http_client, "wait_for_ctx", "sdk")  # the SDK's path
            tg.start_soon(hold, ws_client, "wait_for", "ws")
            for path in holds.values():
                await eventually(started(path), what=f"the call waiting on {path.name} to start")

            server.proc.send_signal(signal.SIGTERM)
            await _draining(server)

            async with httpx.AsyncClient(base_url=server.base, timeout=5.0) as http:
                ready = await http.get("/ready")
                assert (ready.status_code, ready.json()["checks"]["server"]) == (503, "draining")
                refused = await http.post(
                    "/mcp", json=modern_call("add", {"a": 1, "b": 2}), headers=modern_headers("add")
                )
            assert refused.status_code == 503
            assert refused.headers["retry-after"] == "1"
            body = refused.json()
            assert body["id"] == 1
            assert body["error"]["data"]["code"] == "dependency_unavailable"
            assert body["error"]["data"]["retryable"] is True

            async with connect(server.ws_url, subprotocols=["mcp"]) as fresh:  # pyright: ignore[reportArgumentType]
                with pytest.raises(ConnectionClosed) as closed:
                    await fresh.recv()
            assert closed.value.rcvd is not None
            assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1013, "server shutting down")

            # A new call on a connection that is already open is refused by the pipeline's gate.
            assert _error_code(await ws_client.call_tool("add", {"a": 1, "b": 2})) == "dependency_unavailable"

            assert server.proc.poll() is None, "the server waits for the calls in flight"
            for path in holds.values():
                path.write_text("go", encoding="utf-8")
        assert {key: result.structured_content for key, result in results.items()} == {
            key: {"result": "done"} for key in holds
        }
        assert await _exit_code(server.proc) == 0, server.stderr()
    finally:
        server.stop()
    steps = lifecycle(server.stderr())
    assert steps[:2] == ["start", "ready"]
    assert steps[-2:] == ["draining", "stopped"]


async def test_calls_still_running_when_the_grace_period_ends_are_answered_with_an_error(tmp_path: Path) -> None:
    config = tmp_path / "mcplane.yaml"
    config.write_text("server:\n  shutdown_grace: 300ms\n", encoding="utf-8")
    server = start_server(OPS_APP, tmp_path=tmp_path, extra_args=["--config", str(config)])
    hold = tmp_path / "never"
    try:
        async with Client(server.url, mode=MODERN) as client, anyio.create_task_group() as tg:
            outcome: list[CallToolResult] = []

            async def call() -> None:
                outcome.append(await client.call_tool("wait_for", {"path": str(hold)}))

            tg.start_soon(call)
            await eventually(started(hold), what="the call to start")
            server.proc.send_signal(signal.SIGTERM)
        (result,) = outcome
        assert _error_code(result) == "dependency_unavailable"
        assert error_of(result)["message"] == "the server shut down before the call finished"
        assert await _exit_code(server.proc) == 0, server.stderr()
    finally:
        server.stop()
    assert lifecycle(server.stderr())[-3:] == ["draining", "cut_short", "stopped"]


async def test_a_second_signal_cuts_the_calls_in_flight_short_at_once(tmp_path: Path) -> None:
    server = start_server(OPS_APP, tmp_path=tmp_path)  # the default grace: 30 s
    hold = tmp_path / "never"
    try:
        async with Client(websocket_client(server.ws_url), mode=MODERN) as client, anyio.create_task_group() as tg:  # pyright: ignore[reportArgumentType]
            outcome: list[CallToolResult] = []

            async def call() -> None:
                outcome.append(await client.call_tool("wait_for", {"path": str(hold)}))

            tg.start_soon(call)
            await eventually(started(hold), what="the call to start")
            server.proc.send_signal(signal.SIGTERM)
            await _draining(server)
            server.proc.send_signal(signal.SIGTERM)
        assert _error_code(outcome[0]) == "dependency_unavailable"
        assert await _exit_code(server.proc) == 0, server.stderr()
    finally:
        server.stop()


class _StdioServer:
    """``mcplane run ops_app.py`` over stdio, spoken to with raw JSON-RPC lines."""

    def __init__(self, process: anyio.abc.Process, stderr: Path) -> None:
        self.process = process
        self.stderr_path = stderr
        assert process.stdout is not None
        self._lines = BufferedByteReceiveStream(process.stdout)
        self.answers: dict[Any, dict[str, Any]] = {}

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    async def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send(orjson.dumps(message) + b"\n")

    async def answer(self, request_id: int) -> dict[str, Any]:
        with anyio.fail_after(15):
            while request_id not in self.answers:
                line = await self._lines.receive_until(b"\n", 1 << 20)
                message = orjson.loads(line)
                self.answers[message.get("id")] = message
        return self.answers.pop(request_id)


async def test_sigterm_lets_a_stdio_call_finish_and_refuses_new_ones(tmp_path: Path) -> None:
    hold = tmp_path / "hold"
    stderr = tmp_path / "stdio.stderr"
    with stderr.open("wb") as errlog:
        process = await anyio.open_process(
            mcplane_command("run", str(OPS_APP)),
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errlog,
        )
    async with process:
        server = _StdioServer(process, stderr)
        await server.send(modern_call("wait_for", {"path": str(hold)}, request_id=1))
        await eventually(started(hold), what="the call to start")

        process.send_signal(signal.SIGTERM)
        await eventually(lambda: True if "draining" in lifecycle(server.stderr()) else None, what="draining")
        await server.send(modern_call("add", {"a": 1, "b": 2}, request_id=2))
        refused = (await server.answer(2))["result"]
        assert refused["isError"] is True
        assert wire_error_of(refused)["code"] == "dependency_unavailable"
        assert process.returncode is None, "the server waits for the call in flight"

        hold.write_text("go", encoding="utf-8")
        assert (await server.answer(1))["result"]["structuredContent"] == {"result": "done"}
        with anyio.fail_after(STOP_TIMEOUT):
            assert await process.wait() == 0, server.stderr()
    assert lifecycle(server.stderr()) == ["start", "ready", "draining", "stopped"]
