"""Session and idle bookkeeping: a 2025-11-25 call on the hot path holds its session as the SDK's
transport holds it (the idle countdown stops while any request runs and restarts when the last one
ends), and only a live session of the caller's takes the hot path."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any, cast

import anyio
import pytest

from mcplane import Plane
from mcplane.sdk_adapter.sessions import (
    IdleClock,
    SDKSessionTransport,
    hold_idle_clock,
    open_sessions,
    release_idle_clock,
)
from mcplane.sdk_adapter.sessions import idle_deadline as deadline_of
from tests.sdk_compat.wire import WAIT, HTTPPeer, answers_of, http_peer, tool_call


class Gate:
    """Tools that wait: ``started`` says a call is running, ``release`` lets them all finish."""

    def __init__(self) -> None:
        self.started = 0
        self.changed = anyio.Event()
        self.release = anyio.Event()


def gated_plane(gate: Gate) -> Plane:
    plane = Plane("sessions")

    @plane.tool()
    async def wait(label: str) -> str:
        gate.started += 1
        gate.changed.set()
        await gate.release.wait()
        return label

    @plane.tool()
    async def echo(text: str) -> str:
        return text

    return plane


async def started(gate: Gate, count: int) -> None:
    with anyio.fail_after(WAIT):
        while gate.started < count:
            gate.changed = anyio.Event()
            await gate.changed.wait()


def idle_deadline(peer: HTTPPeer) -> float:
    manager = peer.app._manager  # pyright: ignore[reportPrivateUsage]
    assert manager is not None
    assert peer.session is not None
    return deadline_of(open_sessions(manager)[peer.session])


async def idle_clock_story(fast: bool) -> list[Any]:
    """What the idle clock does around two overlapping calls, and what they answer."""
    gate = Gate()
    story: list[Any] = []
    async with http_peer(gated_plane(gate), fast=fast, modern=False) as peer:
        story.append(("idle", math.isfinite(idle_deadline(peer))))
        answers: list[Any] = []

        async def call(label: str, request_id: int) -> None:
            answers.append((await peer.call(tool_call("wait", {"label": label}, request_id=request_id))).body)

        async with anyio.create_task_group() as tg:
            tg.start_soon(call, "a", 1)
            tg.start_soon(call, "b", 2)
            await started(gate, 2)
            story.append(("two running", idle_deadline(peer)))
            gate.release.set()
        story.append(("both done", math.isfinite(idle_deadline(peer))))
        story.append(sorted(answers, key=lambda body: body["id"]))
        story.append(("served", peer.served()))
    return story


async def test_the_idle_clock_is_held_while_calls_run_as_the_sdk_holds_it() -> None:
    fast, sdk = await idle_clock_story(True), await idle_clock_story(False)
    assert fast[:-1] == sdk[:-1]
    assert fast[0] == ("idle", True)
    assert fast[1] == ("two running", math.inf)
    assert fast[2] == ("both done", True)
    assert (fast[-1], sdk[-1]) == (("served", 2), ("served", 0))


@pytest.mark.parametrize("session", ["unknown", "ended", "not-a-session"])
async def test_calls_outside_a_live_session_are_answered_as_the_sdk_answers_them(session: str) -> None:
    async def story(fast: bool) -> tuple[Any, int]:
        async with http_peer(gated_plane(Gate()), fast=fast, modern=False) as peer:
            if session == "ended":
                deleted = await peer.http.delete("/mcp", headers=peer.headers())
                assert deleted.status_code == 200
            elif session == "unknown":
                peer.session = peer.session[:-4] + "AAAA" if peer.session else None
            else:
                peer.session = "x"
            answer = await peer.call(tool_call("echo", {"text": "hi"}))
            return answer, peer.served()

    (fast, served), (sdk, _) = await story(True), await story(False)
    assert fast == sdk
    assert served == 0


async def test_a_session_call_takes_the_hot_path_only_after_the_handshake() -> None:
    compared = await answers_of(
        lambda: gated_plane(Gate()), "http-2025", [tool_call("echo", {"text": "a"}, request_id=i) for i in range(3)]
    )
    assert compared.fast == compared.sdk
    assert compared.served == 3


@pytest.mark.parametrize("fast", [True, False])
async def test_a_session_call_arms_no_loop_timer_for_the_idle_clock(fast: bool) -> None:
    """A call only counts itself and notes when it ended: the session's one idle timer, armed when
    its first request ended, is not made and cancelled again per call (the SDK's path neither)."""
    async with http_peer(gated_plane(Gate()), fast=fast, modern=False) as peer:
        manager = peer.app._manager  # pyright: ignore[reportPrivateUsage]
        assert manager is not None
        assert peer.session is not None
        transport = open_sessions(manager)[peer.session]
        assert isinstance(transport, SDKSessionTransport)
        assert transport.idle_clock is not None
        owners = {id(transport.idle_scope), id(transport.idle_clock)}
        loop = asyncio.get_running_loop()
        armed: list[object] = []
        call_at = loop.call_at

        def watched(when: float, callback: Any, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
            if id(getattr(callback, "__self__", None)) in owners:
                armed.append(callback)
            return call_at(when, callback, *args, **kwargs)

        loop.call_at = watched  # type: ignore[method-assign]
        try:
            for request_id in range(1, 6):
                answer = await peer.call(tool_call("echo", {"text": "hi"}, request_id=request_id))
                assert answer.body is not None
                assert "result" in answer.body
        finally:
            del loop.call_at
        assert armed == []
        assert math.isfinite(deadline_of(transport))
        assert peer.served() == (5 if fast else 0)


class FakeTimer:
    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when, self.callback, self.cancelled = when, callback, False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    """The event loop as an :class:`IdleClock` uses it: a clock set by the test, timers it fires."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.timers: list[FakeTimer] = []
        self.armed = 0

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], None]) -> FakeTimer:
        self.armed += 1
        timer = FakeTimer(when, callback)
        self.timers.append(timer)
        return timer

    def pending(self) -> int:
        return sum(not timer.cancelled for timer in self.timers)

    def advance(self, seconds: float) -> None:
        """Move the clock on, firing the timers due on the way, in order."""
        end = self.now + seconds
        while due := sorted((t for t in self.timers if not t.cancelled and t.when <= end), key=lambda t: t.when):
            timer = due[0]
            self.timers.remove(timer)
            self.now = timer.when
            timer.callback()
        self.now = end


def idle_session(timeout: float) -> tuple[SDKSessionTransport, anyio.CancelScope, FakeLoop]:
    """A session's transport with its idle clock on a :class:`FakeLoop` (the test's own loop runs it)."""
    transport = SDKSessionTransport(mcp_session_id="s", idle_timeout=timeout)
    loop = FakeLoop()
    scope = transport.idle_scope = anyio.CancelScope()
    transport.idle_clock = IdleClock(transport, scope, timeout, cast("asyncio.AbstractEventLoop", loop))
    return transport, scope, loop


def one_request(transport: SDKSessionTransport) -> None:
    assert hold_idle_clock(transport)
    release_idle_clock(transport)


async def test_an_idle_session_is_dropped_when_its_idle_period_runs_out_not_later() -> None:
    transport, scope, loop = idle_session(60.0)
    one_request(transport)  # the opening request: the countdown starts, one timer
    assert (loop.armed, deadline_of(transport)) == (1, 1060.0)
    loop.advance(10)
    for _ in range(100):
        one_request(transport)
    assert loop.armed == 1  # calls arm nothing
    assert deadline_of(transport) == 1070.0
    loop.advance(59.9)  # the timer fired at 1060 and re-armed itself for the rest of the period
    assert not scope.cancel_called
    assert loop.armed == 2
    loop.advance(0.1)
    assert scope.cancel_called  # at 1070: the timeout after the last request ended
    assert loop.now == 1070.0
    assert not hold_idle_clock(transport)  # ending: the SDK answers such a request itself


async def test_a_request_in_flight_holds_the_session_however_long_it_runs() -> None:
    transport, scope, loop = idle_session(60.0)
    one_request(transport)
    loop.advance(30)
    assert hold_idle_clock(transport)  # e.g. an open GET stream
    assert deadline_of(transport) == math.inf
    loop.advance(600)
    assert not scope.cancel_called
    assert loop.pending() == 0  # left unarmed while held
    release_idle_clock(transport)
    assert deadline_of(transport) == 1690.0
    loop.advance(59.9)
    assert not scope.cancel_called
    loop.advance(0.1)
    assert scope.cancel_called


async def test_a_stopped_idle_clock_arms_nothing() -> None:
    transport, scope, loop = idle_session(60.0)
    one_request(transport)
    assert hold_idle_clock(transport)
    clock = transport.idle_clock
    assert clock is not None
    clock.stop()  # the session ended (DELETE) with a request in flight
    release_idle_clock(transport)
    assert loop.pending() == 0
    loop.advance(120)
    assert not scope.cancel_called
