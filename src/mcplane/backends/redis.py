"""Redis implementations of every backend Protocol (redis-py asyncio), for more than one replica.

Each takes a ``redis.asyncio.Redis`` client it does not own (build one with
:func:`connect_redis`) and a key ``prefix`` (default ``"mcplane:"``) that namespaces its keys:

- rate limits: ``{prefix}rl:{{tag}}...:{amount}/{period_ms}ms`` — GCRA state, one Lua script per
  hit (and one per lease of many calls, :mod:`mcplane.backends.lease`);
- budgets: ``{prefix}budget:{{tag}}...`` — spent units with the window as PX expiry, one Lua script;
- cache: ``{prefix}cache:{{key}}`` — ``SET PX`` / ``GET`` / ``DEL``;
- session state: ``{prefix}state:{{tag}}:{key}`` (:mod:`mcplane.backends.state`).

Every key holds a hash tag, and multi-key scripts only touch keys that share one, so every
verb runs on Redis Cluster too. :func:`connect_redis` connects to one server, Sentinel or
Cluster (see :mod:`mcplane.backends.redis_connect`).
The scripts read Redis ``TIME`` and PX expiries, never a replica's clock.

Rate-limit hits are **auto-pipelined**: a limiter keeps at most one round trip to Redis in flight;
the hits that concurrent calls make meanwhile wait and then go together as one pipeline (one
write, one round trip, one read) instead of one round trip each. Each hit is still its own atomic
script run with its own answer; a hit with nothing in flight is sent at the end of its turn of
the event loop, alone (as before) unless others joined it in that turn. A connection failure
fails every hit of its pipeline and the hits waiting behind it, so while Redis does not answer no
hit waits longer than one timeout. A pipeline is written as the ``EVALSHA`` commands' RESP bytes,
packed once per set of checks and reused (only the cost is packed per hit), on a connection of
the client's pool, with the client's timeouts and retry policy. On a Redis Cluster (whose
pipelines refuse ``EVALSHA``) each hit is its own script call.

A connection failure (refused, timed out, Redis loading or read-only after a failover) raises
:class:`~mcplane.errors.DependencyUnavailable` with a fixed message naming the component, never
the URL (it may hold a password); the original exception is chained for the server log. The
client reconnects by itself on the next call once Redis is back.

``redis`` is imported lazily: the memory backends work without it installed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from mcplane.backends.budget import BudgetDecision, check_spend, pick
from mcplane.backends.cache import CacheStats, check_ttl
from mcplane.backends.keys import DEFAULT_PREFIX, check_prefix, same_slot, tagged
from mcplane.backends.rate_limit import Decision, Grant, Limit, check_cost, limit_suffix
from mcplane.backends.redis_connect import RedisOptions, connect_redis, parse_redis_url
from mcplane.errors import ConfigError, DependencyUnavailable

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = [
    "RedisBudgetStore",
    "RedisCache",
    "RedisOptions",
    "RedisRateLimiter",
    "check_client",
    "connect_redis",
    "parse_redis_url",
    "unavailable",
]

GCRA_LUA = """
-- KEYS: rate-limit keys sharing one hash tag. ARGV: cost, then interval_ms, period_ms per key.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local cost = tonumber(ARGV[1])
local eps = 1e-6
local tats = {}
local worst, worst_index = 0, 0
local remaining, remaining_index = -1, 0
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i])
  local period = tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', KEYS[i]))
  if tat == nil or tat < now then tat = now end
  local new_tat = tat + cost * interval
  local over = new_tat - now - period
  tats[i] = new_tat
  if over > eps then
    if over > worst then worst, worst_index = over, i end
  else
    local left = math.floor((period - (new_tat - now)) / interval + eps)
    if remaining < 0 or left < remaining then remaining, remaining_index = left, i end
  end
end
if worst_index > 0 then
  return {0, 0, math.max(1, math.ceil(worst - eps)), worst_index}
end
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], string.format('%.3f', tats[i]), 'PX', math.max(1, math.ceil(tats[i] - now)))
end
return {1, remaining, 0, remaining_index}
"""

LEASE_LUA = """
-- A lease (mcplane.backends.rate_limit.lease_step): up to `want` calls of cost 1 from every key at once.
-- KEYS: rate-limit keys sharing one hash tag. ARGV: want, hold_ms, then interval_ms, period_ms per key.
-- Returns {granted, retry_after_ms, index, horizon_us per key}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local want = tonumber(ARGV[1])
local eps = 1e-6
local tats = {}
for i = 1, #KEYS do
  local tat = tonumber(redis.call('GET', KEYS[i]))
  if tat == nil or tat < now then tat = now end
  tats[i] = tat
end
local function fit(hold)
  local granted, index = want, 1
  for i = 1, #KEYS do
    local base = math.max(tats[i], now + hold)
    local room = math.floor((now + tonumber(ARGV[2 * i + 2]) - base + eps) / tonumber(ARGV[2 * i + 1]))
    if room < granted then granted, index = room, i end
  end
  return granted, index
end
local hold = tonumber(ARGV[2])
local granted, index = fit(hold)
if granted < 1 and hold > 0 then
  hold = 0
  granted, index = fit(0)
end
if granted < 1 then
  local worst, worst_index = 0, 1
  for i = 1, #KEYS do
    local over = tats[i] + tonumber(ARGV[2 * i + 1]) - now - tonumber(ARGV[2 * i + 2])
    if over > eps and over > worst then worst, worst_index = over, i end
  end
  return {0, math.max(1, math.ceil(worst - eps)), worst_index}
end
local out = {granted, 0, index}
for i = 1, #KEYS do
  local new_tat = math.max(tats[i], now + hold) + granted * tonumber(ARGV[2 * i + 1])
  local stored = string.format('%.3f', new_tat)
  redis.call('SET', KEYS[i], stored, 'PX', math.max(1, math.ceil(new_tat - now)))
  out[#out + 1] = math.floor((tonumber(stored) - now) * 1000)
end
return out
"""

BUDGET_LUA = """
-- KEYS: budget keys sharing one hash tag. ARGV: cost, window_ms, force (0|1), then a limit per key.
local cost = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local force = ARGV[3] == '1'
local spent, ttl = {}, {}
local allowed = 1
for i = 1, #KEYS do
  local pttl = redis.call('PTTL', KEYS[i])
  if pttl > 0 then
    spent[i] = tonumber(redis.call('GET', KEYS[i])) or 0
    ttl[i] = pttl
  else
    spent[i], ttl[i] = 0, 0
  end
  if spent[i] + cost > tonumber(ARGV[3 + i]) then allowed = 0 end
end
if (allowed == 1 or force) and cost > 0 then
  allowed = 1
  for i = 1, #KEYS do
    if spent[i] == 0 then
      redis.call('SET', KEYS[i], cost, 'PX', window)
      ttl[i] = window
    else
      redis.call('INCRBY', KEYS[i], cost)
    end
    spent[i] = spent[i] + cost
    if spent[i] > tonumber(ARGV[3 + i]) then allowed = 0 end
  end
end
local out = {allowed}
for i = 1, #KEYS do
  out[#out + 1] = spent[i]
  out[#out + 1] = ttl[i]
end
return out
"""


@contextmanager
def unavailable(component: str) -> Generator[None, None, None]:
    """Turn Redis connection-level failures into ``DependencyUnavailable`` naming ``component``."""
    from redis import exceptions as rx

    lost = (rx.ConnectionError, rx.TimeoutError, rx.ReadOnlyError, rx.ClusterDownError, rx.TryAgainError)
    try:
        yield
    except lost as exc:
        raise DependencyUnavailable(f"the {component} is unavailable", details={"dependency": "redis"}) from exc
    except rx.RedisClusterException as exc:
        # No reachable node, or a slot no live node serves; a client-side mistake (keys of
        # several slots in one script) stays what it is.
        if not isinstance(exc, rx.SlotNotCoveredError) and not isinstance(exc.__cause__, lost):
            raise
        raise DependencyUnavailable(f"the {component} is unavailable", details={"dependency": "redis"}) from exc


def is_cluster(client: Any) -> bool:
    from redis.asyncio.cluster import RedisCluster

    return isinstance(client, RedisCluster)


def check_client(client: Redis) -> None:
    """Refuse a client that decodes replies: every Redis backend reads and writes raw bytes."""
    if client.get_connection_kwargs().get("decode_responses"):
        raise ConfigError("the Redis client for mcplane backends must use decode_responses=False")


_Hit = tuple[list[str], list[Any], bytes, Any, "asyncio.Future[Any]"]
"""Keys, arguments, the packed ``EVALSHA``, the script (reloaded on ``NOSCRIPT``), the answer."""
_Prepared = tuple[list[str], list[str], bytes, bytes]
_PREPARED_SIZE = 4096


def _bulk(word: bytes) -> bytes:
    """One RESP bulk string (what redis-py packs for each command argument)."""
    return b"$%d\r\n%s\r\n" % (len(word), word)


_COST_1 = _bulk(b"1")


class RedisRateLimiter:
    """GCRA in one Lua script per hit: every replica sharing the Redis enforces one limit."""

    component = "rate limit store"

    def __init__(self, client: Redis, *, prefix: str = DEFAULT_PREFIX, pipelining: bool = True) -> None:
        """``pipelining``: send the hits of one event-loop turn as one pipeline (see the module doc)."""
        check_client(client)
        self._client = client
        self._prefix = check_prefix(prefix) + "rl:"
        self._script = client.register_script(GCRA_LUA)
        self._lease_script = client.register_script(LEASE_LUA)
        self._pipelining = pipelining and not is_cluster(client)  # a Cluster pipeline refuses EVALSHA
        self._prepared: dict[tuple[tuple[str, Limit], ...], _Prepared] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiting: list[_Hit] = []
        self._in_flight: asyncio.Task[BaseException | None] | None = None

    async def hit(self, key: str, limit: Limit, *, cost: int = 1) -> Decision:
        return await self.hit_all([(key, limit)], cost=cost)

    async def hit_all(self, checks: Sequence[tuple[str, Limit]], *, cost: int = 1) -> Decision:
        redis_keys, limit_args, head, tail = self._prepare(tuple(checks))
        if cost != 1:  # a cost of 1 fits every limit (each allows at least one call)
            check_cost(cost, [limit for _, limit in checks])
        # Typed as Any: redis-py's script stubs change from release to release (8.2 made them unions).
        answer: Any
        if self._pipelining:
            packed = head + (_COST_1 if cost == 1 else _bulk(b"%d" % cost)) + tail
            try:
                answer = await self._queue(redis_keys, [cost, *limit_args], packed, self._script)
            except Exception:
                with unavailable(self.component):
                    raise
        else:
            with unavailable(self.component):
                answer = await self._script(keys=redis_keys, args=[cost, *limit_args])
        allowed, remaining, retry_after_ms, index = answer
        return Decision(bool(allowed), int(remaining), int(retry_after_ms), checks[int(index) - 1][0])

    def _queue(self, keys: list[str], args: list[Any], packed: bytes, script: Any) -> asyncio.Future[Any]:
        """Wait for the next pipeline (the first hit with nothing in flight schedules it)."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop (tests, a restarted app): nothing of the old one survives
            self._loop, self._waiting, self._in_flight = loop, [], None
        future: asyncio.Future[Any] = loop.create_future()
        if not self._waiting and self._in_flight is None:
            self._send_waiting(loop)
        self._waiting.append((keys, args, packed, script, future))
        return future

    def _send_waiting(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the task that sends the next pipeline: at its first step, in the loop's next turn, it
        takes every hit queued until then. Its own task: a caller that gives up (cancellation) must
        not take the others' answers with it."""
        task = self._in_flight = loop.create_task(self._run_waiting(loop))
        task.add_done_callback(lambda done: self._sent(loop, done))

    async def _run_waiting(self, loop: asyncio.AbstractEventLoop) -> BaseException | None:
        batch, self._waiting = self._waiting, []
        if not batch or loop is not self._loop:
            return None
        return await self._run_batch(batch)

    def _sent(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[BaseException | None]) -> None:
        if loop is not self._loop or self._in_flight is not task:
            return
        self._in_flight = None
        failure = None if task.cancelled() else task.result()
        if failure is not None:  # Redis did not answer: the hits that waited behind get that answer now
            batch, self._waiting = self._waiting, []
            for *_, future in batch:
                if not future.done():
                    future.set_exception(failure)
        elif self._waiting:
            self._send_waiting(loop)

    async def _run_batch(self, batch: list[_Hit]) -> BaseException | None:
        """Run the batch and answer each hit; the connection-level failure, if that is what happened."""
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import NoScriptError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        try:
            results = await self._round_trip(b"".join(hit[2] for hit in batch), len(batch))
            for i, result in enumerate(results):
                if isinstance(result, NoScriptError):  # Redis restarted or flushed its scripts
                    results[i] = await self._call_script(batch[i])  # loads the script, then runs it
        except BaseException as exc:
            for *_, future in batch:
                if future.done():
                    continue
                if isinstance(exc, asyncio.CancelledError):
                    future.cancel()
                else:
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return exc if isinstance(exc, RedisConnectionError | RedisTimeoutError) else None
        for (*_, future), result in zip(batch, results, strict=True):
            if future.done():  # the caller was cancelled
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
        return None

    async def _round_trip(self, packed: bytes, count: int) -> list[Any]:
        """Write ``count`` packed commands at once on one pooled connection and read their replies.

        The connection's own retry policy applies (a stale connection after a Redis restart is
        dropped and the batch sent again on a fresh one, as a redis-py pipeline does).
        """
        from redis.exceptions import ResponseError

        pool = self._client.connection_pool
        conn = await pool.get_connection()

        async def exchange() -> list[Any]:
            await conn.send_packed_command(packed)
            replies: list[Any] = []
            for _ in range(count):
                try:
                    replies.append(await conn.read_response())
                except ResponseError as error:  # this command's answer; the connection stays in step
                    replies.append(error)
            return replies

        async def drop(_error: Exception) -> None:
            await conn.disconnect()

        try:
            return await conn.retry.call_with_retry(exchange, drop)
        except BaseException:
            await conn.disconnect(nowait=True)  # replies may be left unread: never reuse it
            raise
        finally:
            await pool.release(conn)

    async def _call_script(self, hit: _Hit) -> Any:
        keys, args, _, script, _ = hit
        try:
            return await script(keys=keys, args=args)
        except Exception as exc:  # this hit's answer, not the batch's
            return exc

    def _prepare(self, checks: tuple[tuple[str, Limit], ...]) -> _Prepared:
        """Redis keys, per-limit script arguments and the packed ``EVALSHA`` around the cost (remembered)."""
        prepared = self._prepared.get(checks)
        if prepared is None:
            keys = same_slot(key for key, _ in checks)
            limit_args: list[str] = []
            for _, limit in checks:
                limit_args += [repr(limit.interval_ms), repr(limit.period_ms)]
            redis_keys = [self._key(key, limit) for key, (_, limit) in zip(keys, checks, strict=True)]
            words = [b"EVALSHA", self._script.sha.encode(), b"%d" % len(redis_keys), *(k.encode() for k in redis_keys)]
            head = b"*%d\r\n" % (len(words) + 1 + len(limit_args)) + b"".join(_bulk(word) for word in words)
            tail = b"".join(_bulk(arg.encode()) for arg in limit_args)
            if len(self._prepared) >= _PREPARED_SIZE:
                del self._prepared[next(iter(self._prepared))]  # the oldest
            prepared = self._prepared[checks] = (redis_keys, limit_args, head, tail)
        return prepared

    async def lease(self, checks: Sequence[tuple[str, Limit]], want: int, *, hold_ms: float = 0.0) -> Grant:
        """Take up to ``want`` calls of cost 1 from every check in one script call (``LEASE_LUA``)."""
        redis_keys, limit_args, _, _ = self._prepare(tuple(checks))
        args: list[Any] = [want, repr(hold_ms), *limit_args]
        answer: Any
        if self._pipelining:  # in the next pipeline with the hits, as one of them
            words = [b"EVALSHA", self._lease_script.sha.encode(), b"%d" % len(redis_keys)]
            words += [key.encode() for key in redis_keys] + [str(arg).encode() for arg in args]
            packed = b"*%d\r\n" % len(words) + b"".join(_bulk(word) for word in words)
            try:
                answer = await self._queue(redis_keys, args, packed, self._lease_script)
            except Exception:
                with unavailable(self.component):
                    raise
        else:
            with unavailable(self.component):
                answer = await self._lease_script(keys=redis_keys, args=args)
        granted, retry_after_ms, index, *horizons_us = (int(value) for value in answer)
        return Grant(granted, tuple(us / 1000.0 for us in horizons_us), retry_after_ms, index - 1)

    async def reset(self, key: str, limit: Limit) -> None:
        with unavailable(self.component):
            await self._client.delete(self._key(same_slot([key])[0], limit))

    def _key(self, tagged_key: str, limit: Limit) -> str:
        return f"{self._prefix}{tagged_key}:{limit_suffix(limit)}"


class RedisBudgetStore:
    """Budgets as counters whose PX expiry is the window, spent by one Lua script."""

    component = "budget store"

    def __init__(self, client: Redis, *, prefix: str = DEFAULT_PREFIX) -> None:
        check_client(client)
        self._client = client
        self._prefix = check_prefix(prefix) + "budget:"
        self._script = client.register_script(BUDGET_LUA)

    async def try_spend(self, key: str, cost: int, limit: int, window: float) -> BudgetDecision:
        return await self._spend([(key, limit)], cost, window, force=False)

    async def try_spend_all(self, checks: Sequence[tuple[str, int]], cost: int, window: float) -> BudgetDecision:
        return await self._spend(checks, cost, window, force=False)

    async def charge(self, checks: Sequence[tuple[str, int]], cost: int, window: float) -> BudgetDecision:
        return await self._spend(checks, cost, window, force=True)

    async def _spend(
        self, checks: Sequence[tuple[str, int]], cost: int, window: float, *, force: bool
    ) -> BudgetDecision:
        keys = same_slot(key for key, _ in checks)
        window_ms = check_spend(cost, [limit for _, limit in checks], window)
        args: list[Any] = [cost, window_ms, int(force), *(limit for _, limit in checks)]
        with unavailable(self.component):
            out: Any = await self._script(keys=[self._prefix + key for key in keys], args=args)
        values = [int(value) for value in out]
        rows = [(values[1 + 2 * i], limit, values[2 + 2 * i]) for i, (_, limit) in enumerate(checks)]
        return pick(rows, bool(values[0]), [key for key, _ in checks])


class RedisCache:
    """Tool results as plain Redis strings with PX expiry (evicted by Redis' own maxmemory policy)."""

    component = "cache"

    def __init__(self, client: Redis, *, prefix: str = DEFAULT_PREFIX) -> None:
        check_client(client)
        self._client = client
        self._prefix = check_prefix(prefix) + "cache:"
        self.stats = CacheStats()

    async def get(self, key: str) -> bytes | None:
        try:
            with unavailable(self.component):
                value = await self._client.get(self._key(key))
        except DependencyUnavailable:
            self.stats.errors += 1
            raise
        if value is None:
            self.stats.misses += 1
            return None
        self.stats.hits += 1
        return value if isinstance(value, bytes) else value.encode()

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        ttl_ms = check_ttl(ttl)
        try:
            with unavailable(self.component):
                await self._client.set(self._key(key), value, px=ttl_ms)
        except DependencyUnavailable:
            self.stats.errors += 1
            raise
        self.stats.sets += 1

    async def delete(self, key: str) -> None:
        with unavailable(self.component):
            await self._client.delete(self._key(key))

    def _key(self, key: str) -> str:
        """One entry, one hash tag: entries spread over a Cluster's slots."""
        return self._prefix + tagged(key)
