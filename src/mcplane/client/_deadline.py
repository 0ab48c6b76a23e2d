"""Deadlines: per call (``timeout=``) or per agent step (``client.step(deadline=...)``).

A step bounds every call made inside it, in this task and in tasks it starts (a context
variable), by any client. Steps nest: an inner step never outlives the outer one. A call's
deadline is the tightest of its own timeout (or the client's default) and the step's.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass

__all__ = ["Step", "call_deadline", "current_step", "step"]


@dataclass(frozen=True, slots=True)
class Step:
    """One agent step: the calls made inside it finish (or fail) by :attr:`deadline`."""

    deadline: float
    """Absolute, on :attr:`clock`."""
    clock: Callable[[], float]

    def remaining(self) -> float:
        """Seconds left in this step (never negative)."""
        return max(0.0, self.deadline - self.clock())


_current: ContextVar[Step | None] = ContextVar("mcplane_client_step", default=None)


def current_step() -> Step | None:
    """The innermost step open in this task, if any."""
    return _current.get()


@asynccontextmanager
async def step(seconds: float, clock: Callable[[], float]) -> AsyncGenerator[Step]:
    if not seconds >= 0:  # also refuses NaN
        raise ValueError(f"a step's deadline must be a non-negative number of seconds, got {seconds!r}")
    outer = _current.get()
    if outer is not None:
        seconds = min(seconds, outer.remaining())
    current = Step(clock() + seconds, clock)
    token = _current.set(current)
    try:
        yield current
    finally:
        _current.reset(token)


def call_deadline(timeout: float | None, clock: Callable[[], float]) -> float | None:
    """A call's absolute deadline on ``clock``: ``timeout`` and the open step, whichever ends first."""
    bounds: list[float] = []
    if timeout is not None:
        bounds.append(timeout)
    outer = _current.get()
    if outer is not None:
        bounds.append(outer.remaining())
    return clock() + min(bounds) if bounds else None
