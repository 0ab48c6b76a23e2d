"""Rate limiting: limits parsed from text, the ``RateLimiter`` Protocol and its memory implementation.

The algorithm is GCRA (the generic cell rate algorithm, a token bucket stored as one number).
A limit of ``N`` per ``P`` lets a caller burst ``N`` calls, then earns one call back every
``P / N``; there is no window edge, so no double burst at one. Each key stores its
*theoretical arrival time* (TAT)::

    interval    = P / N
    new_tat     = max(tat, now) + cost * interval
    allowed     = new_tat - now <= P
    remaining   = floor((P - (new_tat - now)) / interval)    (when allowed)
    retry_after = new_tat - now - P                          (when refused)

Why a hand-written GCRA rather than the ``limits`` library (its ``MovingWindowRateLimiter``
and ``SlidingWindowCounterRateLimiter`` were the first choice):

- *Injectable clock.* ``limits``' async memory storage reads ``time.time()`` inside the
  library and schedules its own asyncio tasks; tests could only move time by patching module
  globals. Here the memory limiter takes a clock and the tests advance a :class:`ManualClock`.
- *One atomic answer.* ``limits`` returns a bare bool from ``hit``; ``remaining`` and
  ``retry_after`` need a second, non-atomic call (``get_window_stats``). GCRA computes the
  whole :class:`Decision` in the one Lua script that takes the token.
- *One clock across replicas.* ``limits``' moving-window script is given the client's
  timestamp, so replicas with skewed clocks disagree; our script reads Redis ``TIME``.
- *O(1) state.* A moving window keeps up to ``N`` timestamps per key (10 000 for
  ``"10000/hour"``); GCRA keeps one number with a PX expiry.
- *All-or-nothing across keys.* ``hit_all`` checks a per-principal and a global limit in
  one step, so a call refused by one does not spend the other.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from mcplane.backends.clock import Clock, monotonic
from mcplane.backends.keys import same_slot

__all__ = [
    "Decision",
    "Grant",
    "Limit",
    "MemoryRateLimiter",
    "RateLimiter",
    "gcra_step",
    "lease_step",
    "parse_limit",
    "parse_limits",
]

EPSILON_MS = 1e-6
"""Float slack (in ms) so that e.g. three hits of ``3/second`` fill the bucket exactly."""

_UNITS: dict[str, float] = {
    "ms": 0.001,
    "millisecond": 0.001,
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hour": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
}
_LIMIT = re.compile(r"^\s*(\d+)\s*(?:/|\bper\b)\s*(\d+(?:\.\d+)?)?\s*([a-z]+)\s*$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Limit:
    """``amount`` calls per ``period`` seconds."""

    amount: int
    period: float

    def __post_init__(self) -> None:
        if self.amount < 1:
            raise ValueError(f"a rate limit needs at least 1 call per period, got {self.amount}")
        if not self.period > 0:
            raise ValueError(f"a rate limit period must be positive, got {self.period}")

    @property
    def period_ms(self) -> float:
        return self.period * 1000.0

    @property
    def interval_ms(self) -> float:
        """Time to earn back one call."""
        return self.period_ms / self.amount

    def __str__(self) -> str:
        return f"{self.amount}/{self.period:g}s"


def parse_limit(text: str) -> Limit:
    """``"100/minute"``, ``"10/second"``, ``"5 per 2 seconds"``, ``"1000/h"``, ``"20 per 500ms"``."""
    match = _LIMIT.match(text)
    if match is None:
        raise ValueError(f"not a rate limit: {text!r} (expected e.g. '100/minute' or '5 per 2 seconds')")
    amount, count, unit = int(match.group(1)), match.group(2), match.group(3).lower()
    if unit not in _UNITS and unit.endswith("s") and unit[:-1] in _UNITS:
        unit = unit[:-1]
    if unit not in _UNITS:
        raise ValueError(f"unknown time unit {match.group(3)!r} in rate limit {text!r}")
    return Limit(amount, (float(count) if count else 1.0) * _UNITS[unit])


def parse_limits(value: str | Sequence[str]) -> tuple[Limit, ...]:
    """One limit or a list of them (all must hold): ``["10/second", "100/minute"]``."""
    texts = [value] if isinstance(value, str) else list(value)
    return tuple(parse_limit(text) for text in texts)


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to one hit. ``key`` names the check that decided (the refusing or the tightest one)."""

    allowed: bool
    remaining: int
    retry_after_ms: int
    key: str | None = None


@dataclass(frozen=True, slots=True)
class Grant:
    """The answer to one lease (:mod:`mcplane.backends.lease`): ``granted`` calls taken at once.

    ``horizons_ms``: per check, the bucket's TAT right after the lease minus the store's "now"
    (a held call stays safe while ``elapsed + held * interval <= horizon``). When nothing was
    granted, ``retry_after_ms`` and ``index`` are what one exact hit of cost 1 would answer.
    """

    granted: int
    horizons_ms: tuple[float, ...]
    retry_after_ms: int
    index: int


class RateLimiter(Protocol):
    """Atomic rate-limit verbs. Every implementation passes ``tests/backends/test_rate_limit_contract.py``."""

    async def hit(self, key: str, limit: Limit, *, cost: int = 1) -> Decision:
        """Take ``cost`` calls from ``key``'s ``limit`` if they are there; never partially."""
        ...

    async def hit_all(self, checks: Sequence[tuple[str, Limit]], *, cost: int = 1) -> Decision:
        """Take ``cost`` from every ``(key, limit)`` or from none. Keys must share a hash tag."""
        ...

    async def reset(self, key: str, limit: Limit) -> None:
        """Forget ``key``'s state for ``limit`` (a full bucket)."""
        ...


def gcra_step(tat_ms: float | None, now_ms: float, limit: Limit, cost: int) -> tuple[float, float, int]:
    """One GCRA step: ``(new_tat_ms, over_ms, remaining)``; allowed when ``over_ms <= EPSILON_MS``."""
    base = now_ms if tat_ms is None or tat_ms < now_ms else tat_ms
    new_tat = base + cost * limit.interval_ms
    over = new_tat - now_ms - limit.period_ms
    if over > EPSILON_MS:
        return new_tat, over, 0
    return new_tat, over, math.floor((limit.period_ms - (new_tat - now_ms)) / limit.interval_ms + EPSILON_MS)


def lease_step(
    tats_ms: Sequence[float | None], now_ms: float, limits: Sequence[Limit], want: int, hold_ms: float
) -> tuple[int, list[float], float, int]:
    """Take up to ``want`` calls from every bucket at once: ``(granted, new_tats_ms, over_ms, index)``.

    The calls are counted from ``max(tat, now + hold_ms)``: taken from a nearly full bucket, a
    lease also holds the next ``hold_ms`` of refill, so its calls stay safe to spend for that
    long (see :mod:`mcplane.backends.lease`). When the bucket is too low for that, the lease is
    counted from ``max(tat, now)`` (no hold). Nothing fits: ``granted`` is 0 and ``over_ms`` /
    ``index`` are one exact hit's (the first of the worst).
    """
    bases = [now_ms if tat is None or tat < now_ms else tat for tat in tats_ms]
    for hold in (hold_ms, 0.0) if hold_ms > 0 else (0.0,):
        granted, index = want, 0
        for i, (base, limit) in enumerate(zip(bases, limits, strict=True)):
            room = math.floor((now_ms + limit.period_ms - max(base, now_ms + hold) + EPSILON_MS) / limit.interval_ms)
            if room < granted:
                granted, index = room, i
        if granted >= 1:
            new_tats = [
                max(base, now_ms + hold) + granted * limit.interval_ms
                for base, limit in zip(bases, limits, strict=True)
            ]
            return granted, new_tats, 0.0, index
    worst, index = 0.0, 0
    for i, (base, limit) in enumerate(zip(bases, limits, strict=True)):
        over = base + limit.interval_ms - now_ms - limit.period_ms
        if over > EPSILON_MS and over > worst:
            worst, index = over, i
    return 0, [], worst, index


def check_cost(cost: int, limits: Sequence[Limit]) -> None:
    if cost < 1:
        raise ValueError(f"a rate-limit cost must be at least 1, got {cost}")
    for limit in limits:
        if cost > limit.amount:
            raise ValueError(f"cost {cost} can never fit in limit {limit}")


def limit_suffix(limit: Limit) -> str:
    """The part of a storage key that tells limits on one logical key apart."""
    return f"{limit.amount}/{round(limit.period_ms)}ms"


def retry_ms(over_ms: float) -> int:
    return max(1, math.ceil(over_ms - EPSILON_MS))


class MemoryRateLimiter:
    """GCRA in process memory: exact, but each process has its own counts (one replica only)."""

    def __init__(self, *, clock: Clock = monotonic, sweep_every: int = 1024) -> None:
        self._clock = clock
        self._tats: dict[str, float] = {}
        self._sweep_every = sweep_every
        self._ops = 0

    async def hit(self, key: str, limit: Limit, *, cost: int = 1) -> Decision:
        return await self.hit_all([(key, limit)], cost=cost)

    async def hit_all(self, checks: Sequence[tuple[str, Limit]], *, cost: int = 1) -> Decision:
        keys = same_slot(key for key, _ in checks)
        check_cost(cost, [limit for _, limit in checks])
        now = self._clock() * 1000.0
        self._maybe_sweep(now)
        steps = [
            gcra_step(self._tats.get(f"{key}:{limit_suffix(limit)}"), now, limit, cost)
            for key, (_, limit) in zip(keys, checks, strict=True)
        ]
        refused = [(over, i) for i, (_, over, _) in enumerate(steps) if over > EPSILON_MS]
        if refused:
            over, index = max(refused, key=lambda item: (item[0], -item[1]))  # first of the worst
            return Decision(False, 0, retry_ms(over), checks[index][0])
        for key, (_, limit), (new_tat, _, _) in zip(keys, checks, steps, strict=True):
            self._tats[f"{key}:{limit_suffix(limit)}"] = new_tat
        remaining, index = min((step[2], i) for i, step in enumerate(steps))
        return Decision(True, remaining, 0, checks[index][0])

    async def lease(self, checks: Sequence[tuple[str, Limit]], want: int, *, hold_ms: float = 0.0) -> Grant:
        """Take up to ``want`` calls of cost 1 from every check at once (:func:`lease_step`)."""
        keys = same_slot(key for key, _ in checks)
        now = self._clock() * 1000.0
        self._maybe_sweep(now)
        names = [f"{key}:{limit_suffix(limit)}" for key, (_, limit) in zip(keys, checks, strict=True)]
        limits = [limit for _, limit in checks]
        granted, new_tats, over, index = lease_step(
            [self._tats.get(name) for name in names], now, limits, want, hold_ms
        )
        if not granted:
            return Grant(0, (), retry_ms(over), index)
        for name, new_tat in zip(names, new_tats, strict=True):
            self._tats[name] = new_tat
        return Grant(granted, tuple(new_tat - now for new_tat in new_tats), 0, index)

    async def reset(self, key: str, limit: Limit) -> None:
        self._tats.pop(f"{same_slot([key])[0]}:{limit_suffix(limit)}", None)

    def _maybe_sweep(self, now_ms: float) -> None:
        """Drop full buckets (TAT in the past) now and then, so memory tracks active keys only."""
        self._ops += 1
        if self._ops % self._sweep_every:
            return
        for key in [key for key, tat in self._tats.items() if tat <= now_ms]:
            del self._tats[key]

    def __len__(self) -> int:
        return len(self._tats)
