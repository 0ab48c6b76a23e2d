"""Retries: only for read-only / idempotent (or caller-listed) tools, only for retryable failures,
honouring ``retry_after_ms``, never past the deadline. Waits go through a fake sleep."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from mcp.shared.exceptions import MCPError

from mcplane import DependencyUnavailable, Forbidden, RateLimited
from mcplane.client import Client, RetryPolicy
from tests.client.conftest import FakeSleep, FakeTime, stdio_command
from tests.conftest import ServerProcess


def _key() -> str:
    return uuid.uuid4().hex


async def _calls(client: Client, key: str) -> int:
    result = await client.call_tool("calls", {"key": key})
    assert result.structured_content is not None
    return result.structured_content["result"]


async def test_a_read_only_tool_is_retried_until_it_answers(endpoint: str, fake_sleep: FakeSleep) -> None:
    key = _key()
    async with Client(endpoint, sleep=fake_sleep) as client:
        result = await client.call_tool("flaky_read", {"key": key, "failures": 2})
        assert result.structured_content == {"result": 3}
        assert await _calls(client, key) == 3
    assert len(fake_sleep.waits) == 2
    assert all(0 <= wait <= 5.0 for wait in fake_sleep.waits)


async def test_a_non_idempotent_tool_is_not_retried(endpoint: str, fake_sleep: FakeSleep) -> None:
    key = _key()
    async with Client(endpoint, sleep=fake_sleep) as client:
        with pytest.raises(DependencyUnavailable):
            await client.call_tool("flaky_write", {"key": key, "failures": 1})
        assert await _calls(client, key) == 1
    assert fake_sleep.waits == []


async def test_an_idempotent_tool_is_retried(client_server: ServerProcess, fake_sleep: FakeSleep) -> None:
    key = _key()
    async with Client(client_server.url, sleep=fake_sleep) as client:
        result = await client.call_tool("flaky_put", {"key": key, "failures": 1, "code": "timeout"})
    assert result.structured_content == {"result": 2}
    assert len(fake_sleep.waits) == 1


async def test_the_caller_may_list_a_tool_as_retryable(client_server: ServerProcess, fake_sleep: FakeSleep) -> None:
    listed, per_call = _key(), _key()
    async with Client(client_server.url, sleep=fake_sleep, retryable_tools={"flaky_write"}) as client:
        assert (await client.call_tool("flaky_write", {"key": listed, "failures": 1})).structured_content == {
            "result": 2
        }
    async with Client(client_server.url, sleep=fake_sleep) as client:
        result = await client.call_tool("flaky_write", {"key": per_call, "failures": 1}, retry=True)
        assert result.structured_content == {"result": 2}


async def test_retry_false_turns_retries_off_for_one_call(client_server: ServerProcess, fake_sleep: FakeSleep) -> None:
    key = _key()
    async with Client(client_server.url, sleep=fake_sleep) as client:
        with pytest.raises(DependencyUnavailable):
            await client.call_tool("flaky_read", {"key": key, "failures": 1}, retry=False)
        assert await _calls(client, key) == 1
    assert fake_sleep.waits == []


async def test_no_policy_never_retries(client_server: ServerProcess, fake_sleep: FakeSleep) -> None:
    key = _key()
    async with Client(client_server.url, sleep=fake_sleep, retry=None) as client:
        with pytest.raises(DependencyUnavailable):
            await client.call_tool("flaky_read", {"key": key, "failures": 1})
        assert await _calls(client, key) == 1


async def test_a_failure_not_marked_retryable_is_not_retried(
    client_server: ServerProcess, fake_sleep: FakeSleep
) -> None:
    key = _key()
    async with Client(client_server.url, sleep=fake_sleep) as client:
        with pytest.raises(Forbidden):
            await client.call_tool("flaky_read", {"key": key, "failures": 1, "code": "forbidden"})
        assert await _calls(client, key) == 1
    assert fake_sleep.waits == []


async def test_attempts_are_bounded_by_the_policy(client_server: ServerProcess, fake_sleep: FakeSleep) -> None:
    key = _key()
    async with Client(client_server.url, sleep=fake_sleep, retry=RetryPolicy(attempts=4)) as client:
        with pytest.raises(DependencyUnavailable) as caught:
            await client.call_tool("flaky_read", {"key": key, "failures": 10})
        assert await _calls(client, key) == 4
    assert len(fake_sleep.waits) == 3
    assert caught.value.message == "transient failure 4 of 10"


async def test_backoff_grows_with_full_jitter(client_server: ServerProcess, fake_sleep: FakeSleep) -> None:
    policy = RetryPolicy(attempts=6, backoff=0.5, multiplier=2.0, max_backoff=3.0)
    async with Client(client_server.url, sleep=fake_sleep, retry=policy) as client:
        with pytest.raises(DependencyUnavailable):
            await client.call_tool("flaky_read", {"key": _key(), "failures": 10})
    ceilings = [0.5, 1.0, 2.0, 3.0, 3.0]
    assert len(fake_sleep.waits) == len(ceilings)
    assert all(0 <= wait <= ceiling for wait, ceiling in zip(fake_sleep.waits, ceilings, strict=True))


async def test_retry_after_ms_is_honoured(client_server: ServerProcess, fake_sleep: FakeSleep) -> None:
    key = _key()
    arguments: dict[str, Any] = {"key": key, "failures": 2, "code": "rate_limited", "retry_after_ms": 1500}
    async with Client(client_server.url, sleep=fake_sleep, timeout=30.0) as client:
        result = await client.call_tool("flaky_read", arguments)
    assert result.structured_content == {"result": 3}
    assert fake_sleep.waits == [1.5, 1.5]  # longer than any backoff of the default policy


async def test_no_wait_runs_past_the_deadline(client_server: ServerProcess, fake_sleep: FakeSleep) -> None:
    key = _key()
    arguments: dict[str, Any] = {"key": key, "failures": 1, "code": "rate_limited", "retry_after_ms": 5000}
    async with Client(client_server.url, sleep=fake_sleep) as client:
        with pytest.raises(RateLimited) as caught:
            await client.call_tool("flaky_read", arguments, timeout=2.0)
        assert await _calls(client, key) == 1
    assert fake_sleep.waits == []  # a 5 s wait cannot end before a 2 s deadline: give up at once
    assert caught.value.retry_after_ms == 5000


async def test_a_lost_connection_is_reopened_for_a_retry(tmp_path: Path, fake_sleep: FakeSleep) -> None:
    marker = tmp_path / "crashed"
    async with Client(stdio_command(), sleep=fake_sleep) as client:
        result = await client.call_tool("crash_once", {"marker": str(marker)})
    assert marker.exists()  # the first server process did crash
    assert result.structured_content == {"result": "survived"}
    assert len(fake_sleep.waits) == 1


async def test_a_lost_connection_fails_a_non_idempotent_call_then_reconnects(
    tmp_path: Path, fake_sleep: FakeSleep
) -> None:
    marker = tmp_path / "crashed"
    async with Client(stdio_command(), sleep=fake_sleep) as client:
        with pytest.raises(MCPError):
            await client.call_tool("crash_write", {"marker": str(marker)})
        assert fake_sleep.waits == []
        result = await client.call_tool("crash_write", {"marker": str(marker)})
    assert result.structured_content == {"result": "survived"}


def test_a_policy_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError, match="backoff"):
        RetryPolicy(backoff=-1.0)


async def test_retries_stop_when_the_next_wait_would_pass_the_deadline(client_server: ServerProcess) -> None:
    time = FakeTime()
    key = _key()
    arguments: dict[str, Any] = {"key": key, "failures": 10, "code": "rate_limited", "retry_after_ms": 400}
    policy = RetryPolicy(attempts=10)
    async with Client(client_server.url, clock=time.clock, sleep=time.sleep, retry=policy) as client:
        with pytest.raises(RateLimited):
            await client.call_tool("flaky_read", arguments, timeout=1.0)
        assert await _calls(client, key) == 3  # at 0, 0.4 and 0.8 s; a third wait would end at 1.2 s
    assert time.waits == [0.4, 0.4]
