"""The timeout slot: min(own timeout, caller's deadline), applied by cancellation, never by sleeping."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest

from mcplane.context import Context
from mcplane.errors import DeadlineExceeded, Timeout
from mcplane.middleware.timeout import TimeoutMiddleware
from mcplane.pipeline import Call
from mcplane.tool_policy import ToolPolicy
from tests.middleware.scopes import count_cancel_scopes

TINY = 0.05


def _call(*, timeout: float | None = None, deadline: float | None = None) -> Call:
    policy = {} if timeout is None else {"timeout": timeout}
    return Call("tool", "t", {}, Context(correlation_id="c", deadline=deadline), ToolPolicy.from_mapping(policy))


async def _never(call: Call) -> Any:
    await anyio.Event().wait()  # never fires: only cancellation ends this


async def _report_deadline(call: Call) -> tuple[float | None, float | None]:
    return call.context.deadline, call.context.remaining()


async def test_a_call_that_never_finishes_times_out_with_its_policy_timeout() -> None:
    started = time.monotonic()
    with pytest.raises(Timeout) as caught:
        await TimeoutMiddleware(default_timeout=60)(_call(timeout=TINY), _never)
    assert time.monotonic() - started < 5
    assert caught.value.code == "timeout"
    assert caught.value.retryable is True
    assert caught.value.message == "the call did not finish within 0.05 s"


async def test_the_default_timeout_applies_without_a_policy() -> None:
    with pytest.raises(Timeout, match=r"within 0\.05 s"):
        await TimeoutMiddleware(default_timeout=TINY)(_call(), _never)


async def test_no_timeout_and_no_deadline_leaves_the_call_unbounded() -> None:
    assert await TimeoutMiddleware(default_timeout=None)(_call(), _report_deadline) == (None, None)


async def test_the_call_sees_its_own_deadline() -> None:
    before = time.monotonic()
    deadline, remaining = await TimeoutMiddleware(default_timeout=None)(_call(timeout=30), _report_deadline)
    assert deadline is not None
    assert remaining is not None
    assert before + 30 <= deadline <= time.monotonic() + 30
    assert 29 < remaining <= 30


async def test_a_tighter_caller_deadline_wins_and_answers_deadline_exceeded() -> None:
    caller_deadline = time.monotonic() + TINY
    middleware = TimeoutMiddleware(default_timeout=60)
    assert (await middleware(_call(deadline=time.monotonic() + 20), _report_deadline))[0] is not None

    seen: list[float | None] = []

    async def record_then_hang(call: Call) -> Any:
        seen.append(call.context.deadline)
        await anyio.Event().wait()

    with pytest.raises(DeadlineExceeded) as caught:
        await middleware(_call(deadline=caller_deadline), record_then_hang)
    assert seen == [caller_deadline], "the caller's deadline is passed on unchanged"
    assert caught.value.code == "deadline_exceeded"


async def test_a_tighter_own_timeout_wins_over_a_loose_caller_deadline() -> None:
    caller_deadline = time.monotonic() + 60
    with pytest.raises(Timeout):
        await TimeoutMiddleware(default_timeout=None)(_call(timeout=TINY, deadline=caller_deadline), _never)

    deadline, _ = await TimeoutMiddleware(default_timeout=None)(
        _call(timeout=10, deadline=caller_deadline), _report_deadline
    )
    assert deadline is not None
    assert deadline < caller_deadline


async def test_a_caller_deadline_alone_bounds_the_call() -> None:
    with pytest.raises(DeadlineExceeded):
        await TimeoutMiddleware(default_timeout=None)(_call(deadline=time.monotonic() + TINY), _never)


async def test_an_expired_deadline_fails_before_the_call_runs() -> None:
    ran: list[bool] = []

    async def provider(call: Call) -> None:
        ran.append(True)

    with pytest.raises(DeadlineExceeded):
        await TimeoutMiddleware(default_timeout=5)(_call(deadline=time.monotonic() - 1), provider)
    assert ran == []


async def test_a_fast_call_returns_its_result() -> None:
    async def quick(call: Call) -> str:
        return "done"

    assert await TimeoutMiddleware(default_timeout=TINY)(_call(), quick) == "done"


async def test_an_outer_cancellation_is_not_reported_as_a_timeout() -> None:
    middleware = TimeoutMiddleware(default_timeout=60)
    with anyio.move_on_after(TINY) as outer:
        await middleware(_call(), _never)
    assert outer.cancelled_caught, "the outer scope's cancellation propagated out of the middleware"


async def test_calls_in_flight_share_one_loop_timer_for_their_deadlines(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    loop = asyncio.get_running_loop()
    scheduled: list[float] = []
    original = loop.call_at

    def counting_call_at(when: float, callback: Any, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
        scheduled.append(when)
        return original(when, callback, *args, **kwargs)

    monkeypatch.setattr(loop, "call_at", counting_call_at)
    middleware = TimeoutMiddleware(default_timeout=30)
    release, all_started = anyio.Event(), anyio.Event()
    started = 0

    async def wait(call: Call) -> str:
        nonlocal started
        started += 1
        if started == 20:
            all_started.set()
        await release.wait()
        return "done"

    results: list[Any] = []

    async def one() -> None:
        results.append(await middleware(_call(), wait))

    async with anyio.create_task_group() as group:
        for _ in range(20):
            group.start_soon(one)
        await all_started.wait()
        release.set()
    assert results == ["done"] * 20
    assert len(scheduled) <= 1, "each call scheduled a loop timer of its own"


async def test_a_short_deadline_fires_while_a_longer_one_is_watched() -> None:
    middleware = TimeoutMiddleware(default_timeout=None)
    release = anyio.Event()
    outcomes: dict[str, Any] = {}

    async def slow_but_finishing(call: Call) -> str:
        await release.wait()
        return "long done"

    async def long_call() -> None:
        outcomes["long"] = await middleware(_call(timeout=60), slow_but_finishing)

    async def short_call() -> None:
        try:
            await middleware(_call(timeout=TINY), _never)
        except Timeout as exc:
            outcomes["short"] = exc.code
        release.set()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(long_call)
            group.start_soon(short_call)
    assert outcomes == {"short": "timeout", "long": "long done"}


async def test_the_slot_looks_neither_the_backend_nor_the_watchdog_up_again_per_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each call still runs in a cancel scope of anyio's own (asyncio) class, bounded by the loop's one
    watchdog; the scope's class and the watchdog are found once, not per call (``anyio.CancelScope()``
    asks which library runs, and the watchdogs are kept by weak reference)."""
    import asyncio

    from mcplane.middleware import timeout

    middleware = TimeoutMiddleware(default_timeout=30)
    scopes: list[Any] = []

    async def record_scope(call: Call) -> str:
        scopes.append(anyio.CancelScope())  # what the tool would open: nested in the slot's
        return "done"

    assert await middleware(_call(), record_scope) == "done"  # the loop's watchdog is made
    real_scope = anyio.CancelScope
    looked_up: list[Any] = []

    class Watchdogs(dict[Any, Any]):
        def get(self, key: Any, default: Any = None) -> Any:
            looked_up.append(key)
            return super().get(key, default)

    made = count_cancel_scopes(monkeypatch)
    monkeypatch.setattr(timeout, "_watchdogs", Watchdogs(timeout._watchdogs))  # pyright: ignore[reportPrivateUsage]
    for _ in range(5):
        assert await middleware(_call(), record_scope) == "done"
    assert len(made) == 5  # the tool's own five, none of the slot's
    assert looked_up == []
    watchdog = timeout._watchdog()  # pyright: ignore[reportPrivateUsage]
    assert watchdog is not None
    assert watchdog.loop is asyncio.get_running_loop()
    assert isinstance(watchdog.scope(), real_scope)
    with pytest.raises(Timeout):  # still cancelled by its deadline
        await middleware(_call(timeout=TINY), _never)


def test_each_event_loop_has_its_own_watchdog() -> None:
    import asyncio

    from mcplane.middleware import timeout

    async def current() -> Any:
        return timeout._watchdog()  # pyright: ignore[reportPrivateUsage]

    first, second = asyncio.run(current()), asyncio.run(current())
    assert first is not None
    assert second is not None
    assert first is not second
    assert first.loop is not second.loop
    assert timeout._watchdog() is None  # pyright: ignore[reportPrivateUsage]  # no loop running
