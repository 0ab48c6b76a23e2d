"""The agent's token budget: checked before a call (nothing is sent), charged after."""

from __future__ import annotations

import uuid

import pytest
from mcp_types import CallToolResult

from mcplane import BudgetExceeded
from mcplane.client import Budget, Client, estimate_tokens
from tests.conftest import ServerProcess


def _result_tokens(result: CallToolResult) -> int:
    return estimate_tokens(result.model_dump(by_alias=True, mode="json", exclude_none=True, exclude={"meta"}))


async def _calls(client: Client, key: str) -> int:
    result = await client.call_tool("calls", {"key": key})
    assert result.structured_content is not None
    return result.structured_content["result"]


async def test_a_call_that_would_overspend_is_never_sent(client_server: ServerProcess) -> None:
    key = uuid.uuid4().hex
    budget = Budget(tokens=20)
    arguments = {"key": key, "text": "x" * 400}
    async with Client(client_server.url, budget=budget) as client:
        with pytest.raises(BudgetExceeded) as caught:
            await client.call_tool("echo", arguments)
        assert budget.used == 0
    async with Client(client_server.url) as unmetered:
        assert await _calls(unmetered, key) == 0
    cost = estimate_tokens(arguments)
    assert cost == len(f'{{"key":"{key}","text":"{"x" * 400}"}}') // 4
    assert caught.value.details == {"scope": "client", "limit": 20, "used": 0, "cost": cost}
    assert getattr(caught.value, "correlation_id", "missing") is None


async def test_arguments_and_result_are_charged(client_server: ServerProcess) -> None:
    budget = Budget(tokens=10_000)
    arguments = {"key": uuid.uuid4().hex, "text": "hello " * 20}
    async with Client(client_server.url, budget=budget) as client:
        result = await client.call_tool("echo", arguments)
    assert budget.used == estimate_tokens(arguments) + _result_tokens(result)
    assert budget.remaining == 10_000 - budget.used


async def test_a_cost_the_server_reports_replaces_the_estimate(client_server: ServerProcess) -> None:
    budget = Budget(tokens=100)
    async with Client(client_server.url, budget=budget) as client:
        result = await client.call_tool("costly")
    assert _result_tokens(result) > 7  # the estimate would have been larger
    assert budget.used == 7


async def test_error_results_are_charged_too(client_server: ServerProcess) -> None:
    budget = Budget(tokens=10_000)
    async with Client(client_server.url, budget=budget, raise_on_error=False) as client:
        result = await client.call_tool("plain_error")
    assert result.is_error
    assert budget.used == 1 + _result_tokens(result)


async def test_the_budget_stops_an_agent_loop(client_server: ServerProcess) -> None:
    key = uuid.uuid4().hex
    budget = Budget(tokens=500)
    sent = 0
    async with Client(client_server.url, budget=budget) as client:
        for _ in range(100):
            try:
                await client.call_tool("echo", {"key": key, "text": "y" * 120})
            except BudgetExceeded:
                break
            sent += 1
        else:
            pytest.fail("the budget never stopped the loop")
        with pytest.raises(BudgetExceeded):  # and stays stopped
            await client.call_tool("echo", {"key": key, "text": ""})
    async with Client(client_server.url) as unmetered:
        assert await _calls(unmetered, key) == sent  # no refused call reached the server
    assert 0 < sent < 10
    assert budget.used <= budget.limit + 100  # at most the last answer's overdraft


async def test_one_budget_is_shared_by_the_clients_of_an_agent(client_server: ServerProcess) -> None:
    budget = Budget(tokens=10_000)
    async with Client(client_server.url, budget=budget) as http, Client(client_server.ws_url, budget=budget) as ws:
        await http.call_tool("echo", {"key": "shared", "text": "a"})
        after_one = budget.used
        await ws.call_tool("echo", {"key": "shared", "text": "a"})
    assert budget.used == 2 * after_one


def test_a_budget_is_a_count_of_tokens() -> None:
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="non-negative int"):
            Budget(tokens=bad)  # type: ignore[arg-type]
    assert repr(Budget(tokens=3)) == "Budget(tokens=3, used=0)"
