"""The ``drain`` slot's per-call cancel scope: anyio's own (asyncio) class, made without asking anyio per
call which async library runs, and still what ``cut_short`` cancels."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from mcplane.context import Context
from mcplane.errors import DependencyUnavailable
from mcplane.middleware import timeout
from mcplane.middleware.drain import CUT_SHORT, DrainGate
from mcplane.pipeline import Call
from mcplane.tool_policy import ToolPolicy
from tests.middleware.scopes import count_cancel_scopes


def _call() -> Call:
    return Call("tool", "t", {}, Context(correlation_id="c"), ToolPolicy.from_mapping({}))


async def test_the_gate_makes_no_anyio_cancel_scope_per_call_and_still_cuts_calls_short(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gate = DrainGate()
    real_scope = anyio.CancelScope
    seen: list[Any] = []

    async def done(call: Call) -> str:
        seen.append(next(iter(gate._running)))  # the scope the call runs in
        return "done"

    assert await gate(_call(), done) == "done"  # the loop's watchdog (and its scope class) is found
    made = count_cancel_scopes(monkeypatch)
    for _ in range(5):
        assert await gate(_call(), done) == "done"
    assert made == []  # none asked of anyio
    assert all(isinstance(scope, real_scope) for scope in seen)
    assert type(seen[-1]) is type(real_scope())  # anyio's class for this loop, as anyio.CancelScope() gives
    assert gate.in_flight == 0

    started = anyio.Event()

    async def held(call: Call) -> str:
        started.set()
        await anyio.Event().wait()  # only cancellation ends this
        return "never"

    async def cut_when_started() -> None:
        await started.wait()
        assert gate.cut_short() == 1

    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(cut_when_started)
            with pytest.raises(DependencyUnavailable, match=CUT_SHORT):
                await gate(_call(), held)
    assert gate.in_flight == 0


async def test_without_an_asyncio_watchdog_the_scope_is_anyio_s_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """Off asyncio (no loop watchdog: trio), :func:`~mcplane.middleware.timeout.cancel_scope` asks anyio."""
    real_scope = anyio.CancelScope
    monkeypatch.setattr(timeout, "_watchdog", lambda: None)
    made = count_cancel_scopes(monkeypatch)
    assert isinstance(timeout.cancel_scope(), real_scope)
    assert made == [()]
