"""The clock the in-memory backends read, and a manual one for tests.

A clock is any zero-argument callable that returns seconds on a monotonic scale. The memory
backends default to :func:`time.monotonic`; tests pass a :class:`ManualClock` and move time
forward with :meth:`ManualClock.advance` instead of sleeping. The Redis backends need no clock:
they read the Redis server's time, so every replica shares one.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["Clock", "ManualClock", "monotonic"]

Clock = Callable[[], float]
"""Seconds on a monotonic scale (the origin is arbitrary)."""

monotonic: Clock = time.monotonic


class ManualClock:
    """A clock that moves only when told to."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a monotonic clock cannot go back")
        self.now += seconds

    def __repr__(self) -> str:
        return f"ManualClock(now={self.now!r})"
