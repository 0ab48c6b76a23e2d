"""Deadlines: per call and per agent step; they travel in ``_meta`` and bound the wait here."""

from __future__ import annotations

import time
import uuid

import anyio
import pytest

from mcplane import DeadlineExceeded
from mcplane.client import Client, current_step
from tests.client.conftest import FakeTime
from tests.conftest import ServerProcess


async def _seen(client: Client, **kwargs: object) -> dict[str, float | None]:
    result = await client.call_tool("seen", {}, **kwargs)  # type: ignore[arg-type]
    assert result.structured_content is not None
    return result.structured_content


async def test_the_deadline_travels_to_the_server(endpoint: str) -> None:
    async with Client(endpoint) as client:
        seen = await _seen(client, timeout=5.0)
    assert seen["timeout_ms"] is not None
    assert 3000 < seen["timeout_ms"] <= 5000
    # The server bounds the call by what it was told: its own deadline is the caller's.
    assert seen["remaining_ms"] is not None
    assert 0 < seen["remaining_ms"] <= seen["timeout_ms"]


async def test_the_client_default_timeout_travels(client_server: ServerProcess) -> None:
    async with Client(client_server.url, timeout=7.0) as client:
        seen = await _seen(client)
    assert seen["timeout_ms"] is not None
    assert 5000 < seen["timeout_ms"] <= 7000


async def test_no_timeout_sends_no_deadline(client_server: ServerProcess) -> None:
    async with Client(client_server.url, timeout=None) as client:
        seen = await _seen(client)
    assert seen["timeout_ms"] is None


async def test_a_step_bounds_every_call_inside_it(client_server: ServerProcess) -> None:
    async with Client(client_server.url, timeout=30.0) as client:
        async with client.step(deadline=2.0) as step:
            assert current_step() is step
            first = await _seen(client)
            second = await _seen(client, timeout=10.0)  # a call's own timeout cannot outlive the step
        assert current_step() is None
        after = await _seen(client)
    assert first["timeout_ms"] is not None
    assert second["timeout_ms"] is not None
    assert 0 < second["timeout_ms"] <= first["timeout_ms"] <= 2000
    assert after["timeout_ms"] is not None
    assert after["timeout_ms"] > 2000


async def test_an_inner_step_never_outlives_the_outer_one(client_server: ServerProcess) -> None:
    async with Client(client_server.url) as client, client.step(deadline=1.5), client.step(deadline=60.0) as inner:
        assert inner.remaining() <= 1.5
        seen = await _seen(client)
    assert seen["timeout_ms"] is not None
    assert seen["timeout_ms"] <= 1500


async def test_a_step_reaches_tasks_started_inside_it(client_server: ServerProcess) -> None:
    results: list[dict[str, float | None]] = []
    async with Client(client_server.url) as client, client.step(deadline=3.0):

        async def one() -> None:
            results.append(await _seen(client))

        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(one)
    assert len(results) == 3
    assert all(r["timeout_ms"] is not None and r["timeout_ms"] <= 3000 for r in results)


async def test_the_deadline_bounds_the_wait(client_server: ServerProcess) -> None:
    key = uuid.uuid4().hex
    async with Client(client_server.url) as client:
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded) as caught:
            await client.call_tool("hang", {"key": key}, timeout=0.5)
        waited = time.monotonic() - started
        assert await client.call_tool("release", {"key": key})
    assert 0.4 <= waited < 5.0
    assert "before the deadline" in caught.value.message


async def test_a_spent_step_sends_nothing(client_server: ServerProcess) -> None:
    key = uuid.uuid4().hex
    async with Client(client_server.url) as client:
        async with client.step(deadline=0.0):
            with pytest.raises(DeadlineExceeded):
                await client.call_tool("echo", {"key": key, "text": "hi"})
        counted = await client.call_tool("calls", {"key": key})
    assert counted.structured_content == {"result": 0}


async def test_a_negative_step_is_refused() -> None:
    client = Client("http://127.0.0.1:9/mcp")
    with pytest.raises(ValueError, match="non-negative"):
        async with client.step(deadline=-1):
            pass


async def test_the_deadline_is_kept_on_the_clients_clock(client_server: ServerProcess) -> None:
    time = FakeTime()
    key = uuid.uuid4().hex
    async with Client(client_server.url, clock=time.clock) as client:
        async with client.step(deadline=2.0) as step:
            seen = await _seen(client)
            time.now += 1.5
            assert step.remaining() == pytest.approx(0.5)
            later = await _seen(client)
            time.now += 1.0
            with pytest.raises(DeadlineExceeded, match="before 'echo' could be sent"):
                await client.call_tool("echo", {"key": key, "text": "late"})
        assert (await client.call_tool("calls", {"key": key})).structured_content == {"result": 0}
    assert seen["timeout_ms"] == 2000
    assert later["timeout_ms"] == 500
