"""Leased allowance: a replica takes a batch of calls from the shared bucket and spends them locally.

:class:`LeasedRateLimiter` wraps a limiter that can lease (:class:`~mcplane.backends.redis.RedisRateLimiter`,
or :class:`~mcplane.backends.rate_limit.MemoryRateLimiter` in tests). For a set of checks it takes
up to ``size`` calls in ONE atomic step (one Redis script call): every bucket's TAT advances by
that many emission intervals, or by as many as fit. The calls are then spent from process memory,
with no round trip; when a lease runs low the next one is fetched in the background, and a call
that finds no calls left waits for the oldest fetch in flight (or starts one). "Low" is fewer
than a quarter of a lease; or, when more than that came in while the last fetch was in flight,
fewer than twice as many as came in (counting the calls the fetches in flight will bring): calls
that arrive faster than one lease per round trip have the next leases fetched ahead, up to
:data:`MAX_FETCHES` in flight per set of checks, instead of waiting for the store every other
lease.

**No over-admission, ever.** Let ``X`` be a bucket's calls left in the store and ``H`` the calls
held by all replicas. The exact limiter is a token bucket of ``burst`` calls; leasing keeps
``X + H <= burst`` at every instant, so the calls admitted, at the times they were admitted,
are a sequence the exact limiter would have admitted too. A lease returns its bucket's TAT right
after it (as ``horizon``: TAT minus the store's "now"); the TAT never goes back, so ``X <= burst -
(horizon - elapsed) / interval``, and calls held from that lease are kept only while ``elapsed +
held * interval <= horizon`` (the bucket's refill would otherwise forget them): unspent calls
lapse at the rate the bucket refills. ``elapsed`` is counted from when the lease was *sent*
(never later than the store's "now"), so it errs on the safe side. A lease taken from a nearly
full bucket counts its calls from ``now + hold`` (``hold = min(ttl, period / 16)``): it holds
the next ``hold`` of refill as well, which keeps its calls valid that long; from a low bucket it
takes only what is there, with no hold. Whatever the horizon, held calls lapse after ``ttl``.

**The price: under-admission**, bounded. A replica may refuse while another holds unspent calls
(per replica and set of checks at most ``size``, or, for calls arriving faster than a lease per
round trip, what they take in two round trips, never more than ``MAX_FETCHES + 1`` leases; with
``scope: both`` each caller's lease holds calls of the tool's global bucket too); a lease from a
nearly full bucket reserves its ``hold`` of refill, so a burst that empties the bucket within
that time gets up to ``hold / interval`` calls fewer (at most 1/16 of the burst).

**Sizing.** A lease never takes more than ``max`` nor 1/16 of the smallest burst among its
limits; below 2 calls (bursts under 32, like ``10/minute``) the checks are not leased at all and
every hit is exact. The size adapts per set of checks: it starts at 2, doubles when a lease is
spent before it lapses, halves when calls lapse unspent (down to 1), so a rare caller holds
little. Hits of a cost other than 1 are exact. A refusal comes from the store, for one call,
with the ``retry_after_ms`` the exact limiter would give. When the store is unreachable a fetch
fails like an exact hit (``DependencyUnavailable``), so the middleware's ``fail_open`` applies
unchanged; calls already held stay valid (they were taken while it answered).
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from mcplane.backends.clock import Clock, monotonic
from mcplane.backends.rate_limit import EPSILON_MS, Decision, Grant, Limit

__all__ = ["LeaseOptions", "LeaseSource", "LeasedRateLimiter"]

SHARE = 16
"""A lease takes at most 1/SHARE of a limit's burst and holds at most 1/SHARE of its period."""
_MIN_CAP = 2
"""Checks whose lease could not hold this many calls are not leased (every hit exact)."""
_ACCOUNTS_SIZE = 4096
MAX_FETCHES = 4
"""Most fetches in flight per set of checks (one, unless calls come in faster than a lease a round trip)."""


class LeaseSource(Protocol):
    """A rate limiter that can also lease (``MemoryRateLimiter``, ``RedisRateLimiter``)."""

    async def hit(self, key: str, limit: Limit, *, cost: int = 1) -> Decision: ...

    async def hit_all(self, checks: Sequence[tuple[str, Limit]], *, cost: int = 1) -> Decision: ...

    async def reset(self, key: str, limit: Limit) -> None: ...

    async def lease(self, checks: Sequence[tuple[str, Limit]], want: int, *, hold_ms: float = 0.0) -> Grant: ...


@dataclass(frozen=True, slots=True)
class LeaseOptions:
    max: int = 64
    """Most calls one lease takes (a lease also never takes more than 1/16 of the burst)."""
    ttl: float = 1.0
    """Seconds after which held calls lapse, spent or not."""

    def __post_init__(self) -> None:
        if self.max < 1:
            raise ValueError(f"a lease needs at least 1 call, got max={self.max}")
        if not self.ttl > 0:
            raise ValueError(f"a lease ttl must be positive, got {self.ttl}")


class _Lease:
    """Calls held from one grant: ``left`` of them, safe while ``now <= until``."""

    __slots__ = ("bounds", "end", "left", "until")

    def __init__(self, left: int, bounds: list[tuple[float, float]], end: float) -> None:
        self.left = left
        self.bounds = bounds  # per check: (the bucket's TAT on the local clock, interval), all in ms
        self.end = end
        self.until = self._until()

    def _until(self) -> float:
        left = self.left
        until = self.end
        for tat, interval in self.bounds:
            safe = tat - left * interval
            if safe < until:
                until = safe
        return until + EPSILON_MS

    def take(self) -> None:
        self.left -= 1
        self.until = self._until()

    def trim(self, now: float) -> None:
        """Drop the calls that are no longer safe to hold at ``now``."""
        if now > self.end:
            self.left = 0
            return
        fit = min(math.floor((tat - now + EPSILON_MS) / interval) for tat, interval in self.bounds)
        self.left = max(0, min(self.left, fit))
        self.until = self._until()


class _Account:
    """One set of checks: its leases (oldest first), the next lease's size, the fetches in flight."""

    __slots__ = ("asked", "cap", "fetches", "hold_ms", "intervals", "key", "lead", "leases", "pending", "size")

    def __init__(self, checks: Sequence[tuple[str, Limit]], options: LeaseOptions, cap: int) -> None:
        limits = [limit for _, limit in checks]
        self.cap = cap
        self.size = _MIN_CAP  # grows as leases are spent in time
        self.hold_ms = min(options.ttl * 1000.0, min(limit.period_ms for limit in limits) / SHARE)
        self.intervals = [limit.interval_ms for limit in limits]
        self.key = checks[0][0]
        self.leases: deque[_Lease] = deque()
        self.fetches: deque[asyncio.Task[Grant]] = deque()
        """Oldest first."""
        self.pending = 0
        """Calls the fetches in flight asked for."""
        self.asked = 0
        """Calls asked for so far (each once, held or waited for)."""
        self.lead = 0
        """Calls asked for while the last fetch to answer was in flight."""

    def low(self, held: int) -> bool:
        """Whether to fetch another lease now, with ``held`` calls left (see the module's docstring)."""
        if len(self.fetches) >= MAX_FETCHES:
            return False
        quarter, lead = self.size >> 2, self.lead
        if lead <= quarter:  # one lease per round trip is enough
            return not self.pending and held < quarter
        return held + self.pending < min(2 * lead, MAX_FETCHES * self.size)

    def take(self, now: float) -> int | None:
        """Spend one held call: the calls still held after it, or ``None`` when none was left."""
        leases = self.leases
        while leases:
            lease = leases[0]
            if now > lease.until:
                lease.trim(now)
                if not lease.left:
                    leases.popleft()
                    self.size = max(1, self.size // 2)  # calls lapsed unspent: lease less
                    continue
            lease.take()
            if not lease.left:
                leases.popleft()
                self.size = min(self.cap, self.size * 2)  # spent in time: lease more
            return leases[0].left if len(leases) == 1 else sum(held.left for held in leases)
        return None

    def add(self, grant: Grant, sent: float, ttl_ms: float) -> None:
        if grant.granted:
            bounds = [
                (sent + horizon, interval) for horizon, interval in zip(grant.horizons_ms, self.intervals, strict=True)
            ]
            self.leases.append(_Lease(grant.granted, bounds, sent + ttl_ms))


class LeasedRateLimiter:
    """A :class:`~mcplane.backends.rate_limit.RateLimiter` spending calls leased from ``source``."""

    def __init__(self, source: LeaseSource, options: LeaseOptions | None = None, *, clock: Clock = monotonic) -> None:
        """``clock``: seconds on the local monotonic scale (tests pass a ``ManualClock``)."""
        self.source = source
        self.options = options or LeaseOptions()
        self._clock = clock
        self._accounts: dict[tuple[tuple[str, Limit], ...], _Account | None] = {}
        self._known: dict[int, tuple[tuple[tuple[str, Limit], ...], _Account]] = {}
        """Accounts by the identity of the checks tuple a caller passes again and again (the
        rate-limit middleware keeps one per tool and caller): no hashing of the limits."""
        self._loop: asyncio.AbstractEventLoop | None = None

    async def hit(self, key: str, limit: Limit, *, cost: int = 1) -> Decision:
        return await self.hit_all(((key, limit),), cost=cost)

    async def hit_all(self, checks: Sequence[tuple[str, Limit]], *, cost: int = 1) -> Decision:
        ident = checks if isinstance(checks, tuple) else tuple(checks)
        try:
            account = self._accounts[ident]
        except KeyError:
            if len(self._accounts) >= _ACCOUNTS_SIZE:
                del self._accounts[next(iter(self._accounts))]  # the oldest (its held calls are let go)
                self._known.clear()
            account = self._accounts[ident] = self._account(ident)
        if account is None or cost != 1:
            return await self.source.hit_all(checks, cost=cost)
        account.asked += 1
        held = account.take(self._clock() * 1000.0)
        if held is None:
            return await self._wait(account, ident)
        if account.low(held):
            self._start_fetch(account, ident)
        return Decision(True, held, 0, account.key)

    def take_held(self, checks: tuple[tuple[str, Limit], ...]) -> bool:
        """Spend one held call of ``checks`` (cost 1) at once, as :meth:`hit_all` would: ``True``
        when one was held (the call is admitted); ``False`` when none was (or the checks are not
        leased, or not seen yet): then :meth:`hit_all` decides, waiting for a lease or the store."""
        known = self._known.get(id(checks))
        if known is not None and known[0] is checks:
            account = known[1]
        else:
            found = self._accounts.get(checks)
            if found is None:
                return False
            account = found
            if len(self._known) >= _ACCOUNTS_SIZE:
                self._known.clear()
            self._known[id(checks)] = (checks, account)  # holding the tuple keeps its id unique
        held = account.take(self._clock() * 1000.0)
        if held is None:
            return False  # hit_all decides, and counts the call as asked for
        account.asked += 1
        if account.low(held):
            self._start_fetch(account, checks)
        return True

    async def reset(self, key: str, limit: Limit) -> None:
        for ident, account in self._accounts.items():
            if account is not None and (key, limit) in ident:
                account.leases.clear()
        await self.source.reset(key, limit)

    def _account(self, checks: tuple[tuple[str, Limit], ...]) -> _Account | None:
        if not checks:
            return None
        cap = min(self.options.max, *(limit.amount // SHARE for _, limit in checks))
        return _Account(checks, self.options, cap) if cap >= _MIN_CAP else None

    async def _wait(self, account: _Account, checks: tuple[tuple[str, Limit], ...]) -> Decision:
        """No call held: wait for the oldest fetch in flight (or start one), then take from it or refuse."""
        while True:
            fetches = account.fetches
            if fetches and fetches[0].get_loop() is not asyncio.get_running_loop():
                fetches.clear()  # another event loop's (tests, a restarted app): never answers here
                account.pending = 0
            fetch = fetches[0] if fetches else self._start_fetch(account, checks)
            grant = await asyncio.shield(fetch)  # a caller that gives up leaves the lease to the others
            held = account.take(self._clock() * 1000.0)
            if held is not None:
                return Decision(True, held, 0, account.key)
            if not grant.granted:  # the store refused: its answer is one exact hit's
                return Decision(False, 0, grant.retry_after_ms, checks[grant.index][0])

    def _start_fetch(self, account: _Account, checks: tuple[tuple[str, Limit], ...]) -> asyncio.Task[Grant]:
        want = account.size
        task = asyncio.get_running_loop().create_task(self._fetch(account, checks, want, account.asked))
        account.fetches.append(task)
        account.pending += want
        task.add_done_callback(_retrieve)
        return task

    async def _fetch(self, account: _Account, checks: tuple[tuple[str, Limit], ...], want: int, asked: int) -> Grant:
        """``asked``: the account's calls asked for when this fetch started."""
        sent = self._clock() * 1000.0
        try:
            grant = await self.source.lease(checks, want, hold_ms=account.hold_ms)
            account.add(grant, sent, self.options.ttl * 1000.0)
            account.lead = account.asked - asked
            return grant
        finally:
            task = asyncio.current_task()
            fetches = account.fetches
            for i, fetch in enumerate(fetches):
                if fetch is task:
                    del fetches[i]
                    account.pending -= want
                    break


def _retrieve(task: asyncio.Task[Grant]) -> None:
    """A prefetch nobody waited for may fail (the store is down): the next call that needs it finds out."""
    if not task.cancelled():
        task.exception()
