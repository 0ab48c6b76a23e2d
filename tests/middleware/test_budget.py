"""The budget slot, driven directly with fake calls, a memory budget store and a manual clock."""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping
from typing import Any

import orjson
import pytest
from mcp_types import CallToolResult, TextContent

from mcplane.backends import ManualClock, MemoryBudgetStore
from mcplane.backends.redis import RedisBudgetStore, connect_redis
from mcplane.context import Context, Principal
from mcplane.errors import BudgetExceeded, ConfigError, DependencyUnavailable
from mcplane.middleware.budget import BudgetMiddleware, BudgetOptions, estimate_tokens
from mcplane.pipeline import Call, CallKind
from mcplane.tool_policy import ToolPolicy

ALICE, BOB = Principal("alice"), Principal("bob")


class SessionContext(Context):
    """A context with a transport session id, as a 2025-11-25 HTTP client's calls have."""

    _test_session_id: str | None = None

    def __init__(self, session_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._test_session_id = session_id

    @property
    def session_id(self) -> str | None:
        return self._test_session_id


class Provider:
    def __init__(self, text: str = "ok") -> None:
        self.calls = 0
        self.text = text

    async def __call__(self, call: Call) -> CallToolResult:
        self.calls += 1
        return CallToolResult(content=[TextContent(type="text", text=self.text)])


def make_call(
    policy: Mapping[str, Any],
    arguments: Mapping[str, Any] | None = None,
    principal: Principal = ALICE,
    *,
    session: str | None = None,
    kind: CallKind = "tool",
) -> Call:
    if session is None:
        context = Context(principal=principal, correlation_id="cid-1")
    else:
        context = SessionContext(session, principal=principal, correlation_id="cid-1")
    return Call(
        kind, "search", {"q": "x"} if arguments is None else arguments, context, ToolPolicy.from_mapping(policy)
    )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def store(clock: ManualClock) -> MemoryBudgetStore:
    return MemoryBudgetStore(clock=clock)


async def spent(store: MemoryBudgetStore, principal: Principal = ALICE) -> int:
    """What the principal has spent (probed with a zero-cost spend)."""
    from mcplane.backends.keys import tag_for

    return (await store.try_spend(tag_for("budget", principal.tenant, principal.subject), 0, 1, 60)).spent


async def test_declared_cost_is_charged_before_and_refuses_before_the_tool(store: MemoryBudgetStore) -> None:
    mw, provider = BudgetMiddleware(BudgetOptions(limit=10, window="1h"), store), Provider()
    for _ in range(3):
        await mw(make_call({"cost": 3}), provider)
    assert await spent(store) == 9
    with pytest.raises(BudgetExceeded) as info:
        await mw(make_call({"cost": 3}), provider)
    assert provider.calls == 3  # the refused call never reached the tool
    assert info.value.code == "budget_exceeded"
    assert info.value.retry_after_ms == 3_600_000
    assert info.value.details == {"scope": "principal", "limit": 10, "remaining": 1, "cost": 3}
    await mw(make_call({"cost": 1}), provider)  # what is left still fits
    await mw(make_call({"cost": 3}, principal=BOB), provider)  # bob has his own budget
    assert provider.calls == 5


async def test_window_end_restores_the_budget(store: MemoryBudgetStore, clock: ManualClock) -> None:
    mw, provider = BudgetMiddleware(BudgetOptions(limit=5, window=60), store), Provider()
    await mw(make_call({"cost": 5}), provider)
    with pytest.raises(BudgetExceeded):
        await mw(make_call({"cost": 1}), provider)
    clock.advance(60)
    await mw(make_call({"cost": 5}), provider)
    assert provider.calls == 2


async def test_zero_cost_tools_are_free(store: MemoryBudgetStore) -> None:
    mw, provider = BudgetMiddleware(BudgetOptions(limit=0), store), Provider()
    await mw(make_call({"cost": 0}), provider)
    with pytest.raises(BudgetExceeded):
        await mw(make_call({"cost": 1}), provider)
    assert provider.calls == 1


async def test_undeclared_cost_is_estimated_from_arguments_and_result(store: MemoryBudgetStore) -> None:
    arguments = {"query": "a" * 100}
    result_text = "b" * 400
    mw, provider = BudgetMiddleware(BudgetOptions(limit=10_000), store), Provider(result_text)
    result = await mw(make_call({}, arguments), provider)
    before = len(orjson.dumps(arguments, option=orjson.OPT_SORT_KEYS)) // 4
    after = len(orjson.dumps(result.model_dump(by_alias=True, mode="json", exclude_none=True))) // 4
    assert (before, after) == (estimate_tokens(arguments), estimate_tokens(result))
    assert before >= 25
    assert after >= 100
    assert await spent(store) == before + after


async def test_result_charge_may_overdraw_and_refuses_the_next_call(store: MemoryBudgetStore) -> None:
    mw, provider = BudgetMiddleware(BudgetOptions(limit=50), store), Provider("c" * 1000)
    await mw(make_call({}), provider)  # small arguments pass; the large answer is charged afterwards
    assert await spent(store) > 50
    with pytest.raises(BudgetExceeded) as info:
        await mw(make_call({}), provider)
    assert info.value.details["remaining"] == 0
    assert provider.calls == 1


async def test_result_charge_can_be_turned_off(store: MemoryBudgetStore) -> None:
    mw, provider = BudgetMiddleware(BudgetOptions(limit=50, charge_results=False), store), Provider("c" * 1000)
    await mw(make_call({}, {}), provider)
    assert await spent(store) == 1  # empty arguments still cost the minimum of 1


async def test_declared_cost_is_not_charged_for_the_result(store: MemoryBudgetStore) -> None:
    mw, provider = BudgetMiddleware(BudgetOptions(limit=50), store), Provider("c" * 1000)
    await mw(make_call({"cost": 2}), provider)
    assert await spent(store) == 2


async def test_a_crashing_tool_is_not_charged_for_a_result(store: MemoryBudgetStore) -> None:
    async def crashing(call: Call) -> Any:
        raise RuntimeError("boom")

    mw = BudgetMiddleware(BudgetOptions(limit=50), store)
    with pytest.raises(RuntimeError):
        await mw(make_call({}, {"q": "x" * 40}), crashing)
    assert await spent(store) == estimate_tokens({"q": "x" * 40})


async def test_session_budget_is_checked_with_the_principal_budget(store: MemoryBudgetStore) -> None:
    mw, provider = BudgetMiddleware(BudgetOptions(limit=100, session_limit=5), store), Provider()
    for _ in range(5):
        await mw(make_call({"cost": 1}, session="s1"), provider)
    with pytest.raises(BudgetExceeded) as info:
        await mw(make_call({"cost": 1}, session="s1"), provider)
    assert (info.value.details["scope"], info.value.details["limit"]) == ("session", 5)
    assert await spent(store) == 5  # the refused call spent nothing from the principal's budget
    await mw(make_call({"cost": 1}, session="s2"), provider)  # a new session starts fresh
    await mw(make_call({"cost": 1}), provider)  # stateless calls only have the principal budget
    assert await spent(store) == 7


async def test_only_tool_calls_are_metered(store: MemoryBudgetStore) -> None:
    mw, provider = BudgetMiddleware(BudgetOptions(limit=0), store), Provider()
    for kind in ("resource", "prompt"):
        await mw(make_call({"cost": 5}, kind=kind), provider)
    assert provider.calls == 2


async def test_malformed_cost_and_options_are_config_errors(store: MemoryBudgetStore) -> None:
    mw, provider = BudgetMiddleware(BudgetOptions(limit=10), store), Provider()
    for cost in (-1, 1.5, "3", True):
        with pytest.raises(ConfigError, match="cost"):
            await mw(make_call({"cost": cost}), provider)
    with pytest.raises(ConfigError, match="limit"):
        BudgetOptions(limit=-5)
    with pytest.raises(ConfigError, match="window"):
        BudgetOptions(limit=5, window="soon")
    assert provider.calls == 0


def unreachable_store() -> RedisBudgetStore:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return RedisBudgetStore(connect_redis(f"redis://127.0.0.1:{port}/0", timeout=1.0))


async def test_unreachable_backend_fails_closed_by_default() -> None:
    backend, provider = unreachable_store(), Provider()
    try:
        with pytest.raises(DependencyUnavailable) as info:
            await BudgetMiddleware(BudgetOptions(limit=10), backend)(make_call({"cost": 1}), provider)
    finally:
        await backend._client.aclose()
    assert info.value.code == "dependency_unavailable"
    assert provider.calls == 0


async def test_unreachable_backend_fails_open_when_configured(caplog: pytest.LogCaptureFixture) -> None:
    backend, provider = unreachable_store(), Provider()
    try:
        with caplog.at_level(logging.WARNING, logger="mcplane.budget"):
            await BudgetMiddleware(BudgetOptions(limit=10, fail_open=True), backend)(make_call({"cost": 1}), provider)
    finally:
        await backend._client.aclose()
    assert provider.calls == 1
    assert "not metered" in caplog.text


async def test_a_failed_result_charge_never_fails_the_call(store: MemoryBudgetStore) -> None:
    class ChargeFails(MemoryBudgetStore):
        async def charge(self, checks: Any, cost: int, window: float) -> Any:
            raise DependencyUnavailable("the budget store is unavailable")

    provider = Provider("d" * 100)
    result = await BudgetMiddleware(BudgetOptions(limit=100), ChargeFails())(make_call({}), provider)
    assert not result.is_error
    assert provider.calls == 1
