"""The innermost slot: a per-call timeout bounded by the call's deadline.

The effective limit is ``min(policy timeout, time left before the caller's deadline)``. When it
passes, the call is cancelled and answers ``timeout`` (or ``deadline_exceeded`` when the
caller's deadline was the tighter bound). Whatever the call hands on through mcplane sees the
same deadline on its context.

The caller's remaining time arrives as ``_meta["mcplane/timeout_ms"]`` on the request or as the
HTTP header ``Mcplane-Timeout-Ms`` (milliseconds left, a number; relative, so clocks need not
agree). ``ctx.propagation_meta()`` gives what to send on: the time still left.

On asyncio the deadline is kept by one timer per event loop (:class:`_Watchdog`) rather than by
the call's cancel scope: a scope with a deadline schedules and cancels a loop timer of its own
per call, which cost more than the rest of the slot. The call still runs in its own
``anyio.CancelScope`` (so cancellation from outside, and scopes the tool opens, nest as before);
the watchdog cancels that scope when its deadline passes, as the scope's own timer would. The
scope's class (the one ``anyio.CancelScope()`` gives on asyncio) and the loop's watchdog are
found once, not per call. Elsewhere (trio) the scope keeps its deadline itself.
:func:`cancel_scope` makes such a scope for other slots (``drain``) the same way.
"""

from __future__ import annotations

import asyncio
import math
import time
import weakref
from typing import Any

import anyio

from mcplane.errors import DeadlineExceeded, Timeout
from mcplane.pipeline import Call, CallNext

__all__ = ["TimeoutMiddleware", "cancel_scope"]


class _Watchdog:
    """Every call's deadline on one event loop, behind one timer (set for the earliest).

    A call whose deadline passes has its scope cancelled, as ``CancelScope(deadline=...)``
    would; a call that ends first is just forgotten (the timer stays set for the earliest
    deadline it was set for, and when it fires it sets itself for the earliest one left).
    """

    __slots__ = ("__weakref__", "_at", "_handle", "_scopes", "loop", "scope")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.scope: type[anyio.CancelScope] = type(anyio.CancelScope())
        """The class ``anyio.CancelScope()`` makes on this loop (asyncio's), made without looking the
        backend up again for every call (``anyio.CancelScope()`` asks which library runs, per call)."""
        self._scopes: dict[anyio.CancelScope, float] = {}
        self._handle: asyncio.TimerHandle | None = None
        self._at = math.inf

    def watch(self, scope: anyio.CancelScope, at: float) -> None:
        """Cancel ``scope`` once the loop's clock reaches ``at`` (unless :meth:`forget` comes first)."""
        self._scopes[scope] = at
        if at < self._at:
            if self._handle is not None:
                self._handle.cancel()
            self._at = at
            self._handle = self.loop.call_at(at, self._fire)

    def clock(self) -> float:
        """The loop's clock (what :meth:`watch` takes; anyio's ``current_time`` on asyncio)."""
        return self.loop.time()

    def forget(self, scope: anyio.CancelScope) -> None:
        self._scopes.pop(scope, None)

    def _fire(self) -> None:
        self._handle, self._at = None, math.inf
        now = self.loop.time()
        due = [scope for scope, at in self._scopes.items() if at <= now]
        for scope in due:
            del self._scopes[scope]
        if self._scopes:
            earliest = min(self._scopes.values())
            self._at, self._handle = earliest, self.loop.call_at(earliest, self._fire)
        for scope in due:
            scope.cancel()


_watchdogs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Watchdog] = weakref.WeakKeyDictionary()


_latest: _Watchdog | None = None
"""The watchdog :func:`_watchdog` gave last: the usual answer, found without a weak reference's lookup."""


def _watchdog() -> _Watchdog | None:
    """The running asyncio loop's watchdog (``None``: not on asyncio)."""
    global _latest
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    latest = _latest
    if latest is not None and latest.loop is loop:
        return latest
    watchdog = _watchdogs.get(loop)
    if watchdog is None:
        watchdog = _watchdogs[loop] = _Watchdog(loop)
    _latest = watchdog
    return watchdog


def cancel_scope() -> anyio.CancelScope:
    """``anyio.CancelScope()`` without asking per call which async library runs: on asyncio a scope of
    the class the loop's watchdog found once; elsewhere ``anyio.CancelScope()``."""
    watchdog = _watchdog()
    return anyio.CancelScope() if watchdog is None else watchdog.scope()


class TimeoutMiddleware:
    def __init__(self, default_timeout: float | None) -> None:
        self.default_timeout = default_timeout

    async def __call__(self, call: Call, call_next: CallNext) -> Any:
        timeout = call.policy.timeout_or(self.default_timeout)
        ctx = call.context
        now = time.monotonic()
        own_deadline = None if timeout is None else now + float(timeout)
        caller_deadline = ctx.deadline
        if caller_deadline is None:
            remaining = ctx.incoming_timeout()
            if remaining is not None:
                caller_deadline = now + remaining
        if caller_deadline is not None and caller_deadline <= now:
            raise DeadlineExceeded()
        if own_deadline is None and caller_deadline is None:
            return await call_next(call)
        caller_bound = caller_deadline is not None and (own_deadline is None or caller_deadline <= own_deadline)
        deadline = caller_deadline if caller_bound else own_deadline
        assert deadline is not None
        call.context = ctx.replace(deadline=deadline)
        watchdog = _watchdog()
        if watchdog is None:
            with anyio.CancelScope(deadline=_to_anyio_clock(deadline)):
                return await call_next(call)
        else:
            scope = watchdog.scope()
            watchdog.watch(scope, watchdog.clock() + (deadline - time.monotonic()))
            try:
                with scope:
                    return await call_next(call)
            finally:
                watchdog.forget(scope)
        # Reached only when the deadline cancelled the call.
        if caller_bound:
            raise DeadlineExceeded()
        raise Timeout(f"the call did not finish within {timeout:g} s")


def _to_anyio_clock(monotonic_deadline: float) -> float:
    """anyio deadlines use the event loop clock; map a ``time.monotonic`` deadline onto it."""
    return anyio.current_time() + (monotonic_deadline - time.monotonic())
