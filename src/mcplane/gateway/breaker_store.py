"""Where circuit-breaker state lives when several gateway replicas share it: memory or Redis.

A :class:`BreakerStore` holds, per endpoint key, a :class:`BreakerRecord`: ``closed`` or
``open``; an open record has a cool-down and, once that is over, at most one *probe* lease. Its
verbs are atomic: :meth:`~BreakerStore.trip` (open, for a cool-down), :meth:`~BreakerStore.close`,
:meth:`~BreakerStore.claim` (the half-open probe: granted to exactly one caller per cool-down),
:meth:`~BreakerStore.release` (a probe ended without a verdict) and :meth:`~BreakerStore.read`.
Each change is also sent to every replica listening (:meth:`~BreakerStore.listen`), and carries a
*generation* that only grows, so a replica never goes back to an older state.

Redis layout, one hash tag per endpoint so each verb is one Lua script (Redis Cluster too)::

    {prefix}breaker:{tag}         hash {state, gen}; PX cool_down + hold (a stale record expires)
    {prefix}breaker:{tag}:cool    exists while the cool-down runs (PX cool_down)
    {prefix}breaker:{tag}:probe   the probe lease's token (PX lease)
    {prefix}breaker:events        pub/sub channel: "key<TAB>state<TAB>retry_ms<TAB>gen"

Generations are the Redis server's ``TIME`` in microseconds (at least the previous one + 1), so
they grow even across a record that expired. A record no replica settles expires ``hold`` after
its cool-down (default: max(cool_down, 60 s)): the circuit is then closed.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast

import anyio

from mcplane.backends.clock import Clock, monotonic
from mcplane.backends.keys import DEFAULT_PREFIX, check_prefix, tagged

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["BreakerRecord", "BreakerStore", "MemoryBreakerStore", "RedisBreakerStore", "hold_for"]

RecordState = Literal["closed", "open", "half_open"]


@dataclass(frozen=True, slots=True)
class BreakerRecord:
    """One endpoint's shared state.

    ``state``: ``closed``; ``open`` (cooling down: refuse for ``retry_after`` seconds, or, at 0,
    the probe may be claimed); ``half_open`` (a probe is out: refuse for ``retry_after``, its
    lease). ``granted``: this :meth:`~BreakerStore.claim` won the probe (then ``token`` releases it).
    """

    key: str
    state: RecordState
    retry_after: float = 0.0
    generation: int = 0
    granted: bool = False
    token: str = ""


class BreakerStore(Protocol):
    async def trip(self, key: str, cool_down: float) -> BreakerRecord:
        """Open the circuit for ``cool_down`` seconds (ends any probe lease)."""
        ...

    async def close(self, key: str) -> BreakerRecord: ...

    async def claim(self, key: str, lease: float) -> BreakerRecord:
        """Claim the probe: granted only when open, cooled down, and no other lease is live."""
        ...

    async def release(self, key: str, token: str) -> None:
        """End the probe lease ``token`` without a verdict (others may claim at once)."""
        ...

    async def read(self, keys: Sequence[str]) -> list[BreakerRecord]: ...

    def listen(self) -> AbstractAsyncContextManager[Any]:
        """An async iterator of every replica's changes (records), while entered."""
        ...


def hold_for(cool_down: float) -> float:
    """How long an open record outlives its cool-down when nobody settles it."""
    return max(cool_down, 60.0)


# ----------------------------------------------------------------- memory
@dataclass
class _Entry:
    state: Literal["closed", "open"] = "closed"
    generation: int = 0
    cool_until: float = 0.0
    probe_until: float = 0.0
    probe_token: str = ""
    expires: float = math.inf


@dataclass
class MemoryBreakerStore:
    """One process's store (replicas in one process, tests); the Redis one shares it across hosts."""

    clock: Clock = monotonic
    _entries: dict[str, _Entry] = field(default_factory=dict[str, _Entry])
    _listeners: list[Callable[[BreakerRecord], None]] = field(default_factory=list[Callable[[BreakerRecord], None]])

    def _entry(self, key: str) -> _Entry:
        entry = self._entries.get(key)
        if entry is None or entry.expires <= self.clock():
            entry = self._entries[key] = _Entry(generation=entry.generation if entry is not None else 0)
        return entry

    def _bump(self, entry: _Entry) -> int:
        entry.generation = max(int(self.clock() * 1_000_000), entry.generation + 1)
        return entry.generation

    def _publish(self, record: BreakerRecord) -> None:
        for listener in list(self._listeners):
            listener(record)

    async def trip(self, key: str, cool_down: float) -> BreakerRecord:
        entry, now = self._entry(key), self.clock()
        entry.state, entry.cool_until, entry.probe_until, entry.probe_token = "open", now + cool_down, 0.0, ""
        entry.expires = now + cool_down + hold_for(cool_down)
        record = BreakerRecord(key, "open", cool_down, self._bump(entry))
        self._publish(record)
        return record

    async def close(self, key: str) -> BreakerRecord:
        entry = self._entry(key)
        entry.state, entry.cool_until, entry.probe_until, entry.probe_token = "closed", 0.0, 0.0, ""
        entry.expires = self.clock() + 60.0
        record = BreakerRecord(key, "closed", 0.0, self._bump(entry))
        self._publish(record)
        return record

    async def claim(self, key: str, lease: float) -> BreakerRecord:
        entry, now = self._entry(key), self.clock()
        current = self._record(key, entry, now)
        if current.state != "open" or current.retry_after > 0:
            return current
        entry.probe_until, entry.probe_token = now + lease, secrets.token_hex(8)
        generation = self._bump(entry)
        self._publish(BreakerRecord(key, "half_open", lease, generation))
        return BreakerRecord(key, "half_open", lease, generation, granted=True, token=entry.probe_token)

    async def release(self, key: str, token: str) -> None:
        entry = self._entry(key)
        if entry.state == "open" and token and entry.probe_token == token and entry.probe_until > self.clock():
            entry.probe_until, entry.probe_token = 0.0, ""
            self._publish(BreakerRecord(key, "open", 0.0, self._bump(entry)))

    async def read(self, keys: Sequence[str]) -> list[BreakerRecord]:
        now = self.clock()
        return [self._record(key, self._entry(key), now) for key in keys]

    def _record(self, key: str, entry: _Entry, now: float) -> BreakerRecord:
        if entry.state == "closed":
            return BreakerRecord(key, "closed", 0.0, entry.generation)
        if entry.cool_until > now:
            return BreakerRecord(key, "open", entry.cool_until - now, entry.generation)
        if entry.probe_until > now:
            return BreakerRecord(key, "half_open", entry.probe_until - now, entry.generation)
        return BreakerRecord(key, "open", 0.0, entry.generation)

    @asynccontextmanager
    async def listen(self) -> AsyncGenerator[Any]:
        send, receive = anyio.create_memory_object_stream[BreakerRecord](1024)

        def deliver(record: BreakerRecord) -> None:
            try:
                send.send_nowait(record)
            except anyio.WouldBlock:  # a listener that stopped reading; periodic reads catch it up
                pass

        self._listeners.append(deliver)
        try:
            async with receive:
                yield receive
        finally:
            self._listeners.remove(deliver)
            send.close()


# ----------------------------------------------------------------- Redis
_PRELUDE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function bump()
  local gen = math.max(now, (tonumber(redis.call('HGET', KEYS[1], 'gen')) or 0) + 1)
  local text = string.format('%.0f', gen)
  redis.call('HSET', KEYS[1], 'gen', text)
  return text
end
local function publish(state, retry_ms, gen)
  redis.call('PUBLISH', ARGV[1], ARGV[2] .. '\\t' .. state .. '\\t' .. retry_ms .. '\\t' .. gen)
end
"""
# KEYS: record, cool, probe. ARGV: channel, logical key, then per script.
TRIP_LUA = (
    _PRELUDE
    + """
local cool, hold = tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('HSET', KEYS[1], 'state', 'open')
local gen = bump()
redis.call('PEXPIRE', KEYS[1], cool + hold)
redis.call('SET', KEYS[2], '1', 'PX', cool)
redis.call('DEL', KEYS[3])
publish('open', cool, gen)
return {'open', cool, gen}
"""
)
CLOSE_LUA = (
    _PRELUDE
    + """
redis.call('HSET', KEYS[1], 'state', 'closed')
local gen = bump()
redis.call('PEXPIRE', KEYS[1], 60000)
redis.call('DEL', KEYS[2], KEYS[3])
publish('closed', 0, gen)
return {'closed', 0, gen}
"""
)
_CURRENT = """
local function current()
  local state = redis.call('HGET', KEYS[1], 'state')
  local gen = redis.call('HGET', KEYS[1], 'gen') or '0'
  if state ~= 'open' then return {'closed', 0, gen} end
  local cool = redis.call('PTTL', KEYS[2])
  if cool > 0 then return {'open', cool, gen} end
  local probe = redis.call('PTTL', KEYS[3])
  if probe > 0 then return {'half_open', probe, gen} end
  return {'open', 0, gen}
end
"""
READ_LUA = _CURRENT + "return current()"
CLAIM_LUA = (
    _PRELUDE
    + _CURRENT
    + """
local found = current()
if found[1] ~= 'open' or found[2] > 0 then return found end
local lease = tonumber(ARGV[3])
redis.call('SET', KEYS[3], ARGV[4], 'PX', lease)
local gen = bump()
publish('half_open', lease, gen)
return {'granted', lease, gen}
"""
)
RELEASE_LUA = (
    _PRELUDE
    + """
if redis.call('GET', KEYS[3]) ~= ARGV[3] then return 0 end
redis.call('DEL', KEYS[3])
publish('open', 0, bump())
return 1
"""
)


class RedisBreakerStore:
    """Breaker records in Redis; ``listen`` subscribes to the change channel (one connection)."""

    component = "breaker store"

    def __init__(self, client: Redis, *, prefix: str = DEFAULT_PREFIX) -> None:
        self._client = client
        self._prefix = check_prefix(prefix) + "breaker:"
        self.channel = self._prefix + "events"
        self._trip = client.register_script(TRIP_LUA)
        self._close = client.register_script(CLOSE_LUA)
        self._claim = client.register_script(CLAIM_LUA)
        self._release = client.register_script(RELEASE_LUA)
        self._read = client.register_script(READ_LUA)

    def _keys(self, key: str) -> list[str]:
        base = self._prefix + tagged(key)
        return [base, base + ":cool", base + ":probe"]

    async def trip(self, key: str, cool_down: float) -> BreakerRecord:
        cool = max(1, round(cool_down * 1000))
        hold = round(hold_for(cool_down) * 1000)
        return _record(key, await self._trip(keys=self._keys(key), args=[self.channel, key, cool, hold]))

    async def close(self, key: str) -> BreakerRecord:
        return _record(key, await self._close(keys=self._keys(key), args=[self.channel, key]))

    async def claim(self, key: str, lease: float) -> BreakerRecord:
        token = secrets.token_hex(8)
        lease_ms = max(1, round(lease * 1000))
        found = await self._claim(keys=self._keys(key), args=[self.channel, key, lease_ms, token])
        return _record(key, found, token)

    async def release(self, key: str, token: str) -> None:
        if token:
            await self._release(keys=self._keys(key), args=[self.channel, key, token])

    async def read(self, keys: Sequence[str]) -> list[BreakerRecord]:
        if not keys:
            return []
        async with self._client.pipeline(transaction=False) as pipe:
            for key in keys:
                await self._read(keys=self._keys(key), client=pipe)
            found = await pipe.execute()
        return [_record(key, row) for key, row in zip(keys, found, strict=True)]

    @asynccontextmanager
    async def listen(self) -> AsyncGenerator[Any]:
        pubsub: Any = self._client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(self.channel)
            yield _events(pubsub)
        finally:
            with anyio.CancelScope(shield=True):
                await pubsub.aclose()


async def _events(pubsub: Any) -> AsyncGenerator[BreakerRecord]:
    async for message in pubsub.listen():
        if message.get("type") != "message":
            continue
        data = message["data"]
        text = data.decode() if isinstance(data, bytes) else str(data)
        parts = text.split("\t")
        if len(parts) != 4 or parts[1] not in ("closed", "open", "half_open"):
            continue
        key, state, retry_ms, generation = parts
        yield BreakerRecord(key, state, int(retry_ms) / 1000, int(generation))  # pyright: ignore[reportArgumentType]


def _record(key: str, row: Any, token: str = "") -> BreakerRecord:
    state, retry_ms, generation = (part.decode() if isinstance(part, bytes) else part for part in row)
    retry = int(retry_ms) / 1000
    if state == "granted":
        return BreakerRecord(key, "half_open", retry, int(generation), granted=True, token=token)
    return BreakerRecord(key, cast("RecordState", state), retry, int(generation))
