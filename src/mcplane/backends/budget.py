"""The ``BudgetStore`` Protocol (spend units against a per-key budget per window) and its memory implementation.

A key's window opens with its first spend and lasts ``window`` seconds; when it ends the key
starts again from zero. ``try_spend`` is all-or-nothing: a spend that would take a key over its
limit is refused and nothing is spent. ``charge`` spends unconditionally (it may go over the
limit; the next ``try_spend`` is then refused): it is for costs known only after the work
is done.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from mcplane.backends.clock import Clock, monotonic
from mcplane.backends.keys import same_slot

__all__ = ["BudgetDecision", "BudgetStore", "MemoryBudgetStore"]


@dataclass(frozen=True, slots=True)
class BudgetDecision:
    """``spent``/``remaining``/``reset_ms`` describe ``key``: the refusing or the tightest budget.

    ``remaining`` never goes below zero; ``reset_ms`` is the time until the window ends
    (0 when nothing has been spent yet).
    """

    allowed: bool
    spent: int
    remaining: int
    reset_ms: int
    key: str | None = None


class BudgetStore(Protocol):
    """Atomic budget verbs. Every implementation passes ``tests/backends/test_budget_contract.py``."""

    async def try_spend(self, key: str, cost: int, limit: int, window: float) -> BudgetDecision:
        """Spend ``cost`` if ``spent + cost <= limit``; otherwise refuse and spend nothing."""
        ...

    async def try_spend_all(self, checks: Sequence[tuple[str, int]], cost: int, window: float) -> BudgetDecision:
        """Spend ``cost`` on every ``(key, limit)`` if each has room, else on none. Keys share a hash tag."""
        ...

    async def charge(self, checks: Sequence[tuple[str, int]], cost: int, window: float) -> BudgetDecision:
        """Spend ``cost`` on every key even past its limit; ``allowed`` tells whether all stayed within."""
        ...


def check_spend(cost: int, limits: Sequence[int], window: float) -> int:
    """Validate a spend; return the window in whole milliseconds."""
    if cost < 0:
        raise ValueError(f"a budget cost must not be negative, got {cost}")
    if any(limit < 0 for limit in limits):
        raise ValueError("a budget limit must not be negative")
    if not window > 0:
        raise ValueError(f"a budget window must be positive, got {window}")
    return max(1, round(window * 1000))


def pick(rows: Sequence[tuple[int, int, int]], allowed: bool, keys: Sequence[str]) -> BudgetDecision:
    """Summarize ``(spent, limit, reset_ms)`` rows: the first over-limit row, else the tightest one."""
    over = [i for i, (spent, limit, _) in enumerate(rows) if spent > limit]
    index = over[0] if over else min(range(len(rows)), key=lambda i: (rows[i][1] - rows[i][0], i))
    spent, limit, reset_ms = rows[index]
    return BudgetDecision(allowed, spent, max(0, limit - spent), reset_ms, keys[index])


class MemoryBudgetStore:
    """Budgets in process memory (one replica only); the window is read from the injected clock."""

    def __init__(self, *, clock: Clock = monotonic, sweep_every: int = 1024) -> None:
        self._clock = clock
        self._entries: dict[str, tuple[int, float]] = {}  # tagged key -> (spent, window end in ms)
        self._sweep_every = sweep_every
        self._ops = 0

    async def try_spend(self, key: str, cost: int, limit: int, window: float) -> BudgetDecision:
        return await self.try_spend_all([(key, limit)], cost, window)

    async def try_spend_all(self, checks: Sequence[tuple[str, int]], cost: int, window: float) -> BudgetDecision:
        return self._spend(checks, cost, window, force=False)

    async def charge(self, checks: Sequence[tuple[str, int]], cost: int, window: float) -> BudgetDecision:
        return self._spend(checks, cost, window, force=True)

    def _spend(self, checks: Sequence[tuple[str, int]], cost: int, window: float, *, force: bool) -> BudgetDecision:
        keys = same_slot(key for key, _ in checks)
        window_ms = check_spend(cost, [limit for _, limit in checks], window)
        now = self._clock() * 1000.0
        self._maybe_sweep(now)
        current = [self._live(key, now) for key in keys]
        allowed = all(spent + cost <= limit for (spent, _), (_, limit) in zip(current, checks, strict=True))
        if (allowed or force) and cost > 0:
            current = [(spent + cost, end if spent else now + window_ms) for spent, end in current]
            for key, entry in zip(keys, current, strict=True):
                self._entries[key] = entry
            allowed = all(spent <= limit for (spent, _), (_, limit) in zip(current, checks, strict=True))
        rows = [
            (spent, limit, math.ceil(end - now) if spent else 0)
            for (spent, end), (_, limit) in zip(current, checks, strict=True)
        ]
        return pick(rows, allowed, [key for key, _ in checks])

    def _live(self, key: str, now_ms: float) -> tuple[int, float]:
        spent, end = self._entries.get(key, (0, 0.0))
        return (spent, end) if end > now_ms else (0, 0.0)

    def _maybe_sweep(self, now_ms: float) -> None:
        self._ops += 1
        if self._ops % self._sweep_every:
            return
        for key in [key for key, (_, end) in self._entries.items() if end <= now_ms]:
            del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)
