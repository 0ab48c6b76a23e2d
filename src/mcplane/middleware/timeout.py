"""The innermost slot: a per-call timeout bounded by the call's deadline.

The effective limit is ``min(policy timeout, time left before the caller's deadline)``. When it
passes, the call is cancelled and answers ``timeout`` (or ``deadline_exceeded`` when the
caller's deadline was the tighter bound). Whatever the call hands on through mcplane sees the
same deadline on its context.

The caller's remaining time arrives as ``_meta["mcplane/timeout_ms"]`` on the request or as the
HTTP header ``Mcplane-Timeout-Ms`` (milliseconds left, a number; relative, so clocks need not
agree). ``ctx.propagation_meta()`` gives what to send on: the time still left.
"""

from __future__ import annotations

import time
from typing import Any

import anyio

from mcplane.errors import DeadlineExceeded, Timeout
from mcplane.pipeline import Call, CallNext

__all__ = ["TimeoutMiddleware"]


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
        with anyio.CancelScope(deadline=_to_anyio_clock(deadline)):
            return await call_next(call)
        # Reached only when this scope's deadline cancelled the call.
        if caller_bound:
            raise DeadlineExceeded()
        raise Timeout(f"the call did not finish within {timeout:g} s")


def _to_anyio_clock(monotonic_deadline: float) -> float:
    """anyio deadlines use the event loop clock; map a ``time.monotonic`` deadline onto it."""
    return anyio.current_time() + (monotonic_deadline - time.monotonic())
