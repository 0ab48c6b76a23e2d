"""Lifespan dependencies over real processes: opened once, shared by thousands of calls, closed at shutdown.

The ``ledger`` dependency of the e2e plane appends ``open`` and ``close`` to a file; the
``diagnostics`` tool reports the server's open file descriptors, asyncio tasks and threads, so
a leak per call or per connection shows as growth between two readings.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mcp import Client, StdioServerParameters

from mcplane import websocket_client
from tests.conftest import E2E_APP, REPO_ROOT, start_server

CALLS = 2000
SLACK = 3
"""Readings may differ by a connection or two in flight; a leak per call would be thousands."""


def _log_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").split() if path.exists() else []


async def _diagnostics(client: Client) -> dict[str, int]:
    result = await client.call_tool("diagnostics", {})
    assert result.structured_content is not None
    return result.structured_content


async def _count_calls(client: Client, n: int) -> int:
    last = 0
    for _ in range(n):
        result = await client.call_tool("count_call", {})
        assert result.structured_content is not None
        last = result.structured_content["result"]
    return last


def _assert_no_growth(before: dict[str, int], after: dict[str, int]) -> None:
    for key in ("fds", "tasks", "threads"):
        assert after[key] <= before[key] + SLACK, f"{key} grew from {before[key]} to {after[key]}"


async def test_http_and_websocket_share_one_dependency_and_leak_nothing(tmp_path: Path) -> None:
    log = tmp_path / "lifespan.log"
    server = start_server(E2E_APP, tmp_path=tmp_path, env={"MCPLANE_TEST_LIFESPAN_LOG": str(log)})
    try:
        async with Client(server.url, mode="2026-07-28") as client:
            await _count_calls(client, 20)  # warm up: first-use allocations are not leaks
            before = await _diagnostics(client)
            total = await _count_calls(client, CALLS)
            assert total == 20 + CALLS, "every call saw the same ledger object"
            after = await _diagnostics(client)
            _assert_no_growth(before, after)
            assert after["fast_served"] - before["fast_served"] > CALLS, "plain calls take the hot path"

        # Connections come and go (legacy sessions, WebSocket connections); none leaves anything behind.
        for _ in range(2):  # warm-up round, then the measured rounds
            for mode in ("legacy", "2026-07-28"):
                async with Client(server.url, mode=mode) as client:
                    await client.call_tool("count_call", {})
                async with Client(websocket_client(server.ws_url), mode=mode) as client:  # pyright: ignore[reportArgumentType]
                    await client.call_tool("count_call", {})
        async with Client(server.url, mode="2026-07-28") as probe:
            before = await _diagnostics(probe)
        for _ in range(20):
            async with Client(server.url, mode="legacy") as client:
                await client.call_tool("count_call", {})
            async with Client(websocket_client(server.ws_url), mode="legacy") as client:  # pyright: ignore[reportArgumentType]
                await client.call_tool("count_call", {})
        async with Client(websocket_client(server.ws_url), mode="2026-07-28") as ws:  # pyright: ignore[reportArgumentType]
            ws_before = await _diagnostics(ws)
            total = await _count_calls(ws, CALLS)
            assert total > 20 + 2 * CALLS
            assert (await _diagnostics(ws))["fast_served"] - ws_before["fast_served"] > CALLS
        async with Client(server.url, mode="2026-07-28") as probe:
            _assert_no_growth(before, await _diagnostics(probe))

        assert _log_lines(log) == ["open"], "the dependency is opened once, however many calls and connections"
    finally:
        returncode = server.stop()
    # SIGTERM drains the server (nothing was in flight), closes the lifespan and exits 0.
    assert returncode == 0, server.stderr()
    assert _log_lines(log) == ["open", "close"], server.stderr()


async def test_stdio_opens_the_dependency_once_and_closes_it_when_stdin_closes(tmp_path: Path) -> None:
    log = tmp_path / "lifespan.log"
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "mcplane.cli", "run", str(E2E_APP)],
        cwd=str(REPO_ROOT),
        env={"MCPLANE_TEST_LIFESPAN_LOG": str(log)},
    )
    async with Client(params) as client:
        await _count_calls(client, 20)
        before = await _diagnostics(client)
        assert await _count_calls(client, CALLS) == 20 + CALLS
        after = await _diagnostics(client)
        _assert_no_growth(before, after)
        assert after["fast_served"] - before["fast_served"] > CALLS, "plain calls take the hot path"
        assert _log_lines(log) == ["open"]
    # The SDK's stdio client closes stdin, waits for the exit and, after two seconds, sends SIGTERM:
    # either way the server closed its lifespan before the client returned.
    assert _log_lines(log) == ["open", "close"]
