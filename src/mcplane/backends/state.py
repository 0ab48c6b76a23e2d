"""Session state for tools: JSON values per conversation, shared by every replica.

A tool asks for ``ctx.state`` (a :class:`State`) and keeps what a multi-step flow needs
between calls::

    await ctx.state.set("user", {"id": 7, "name": "Ada"})
    user = await ctx.state.get("user")                          # None when absent or expired
    await ctx.state.set("lock", True, if_absent=True)           # False: someone else holds it
    count = await ctx.state.incr("attempts")                    # atomic, from 0
    await ctx.state.update("cart", lambda cart: [*cart, item], default=[])   # compare-and-set

**Scope.** The state belongs to the caller's *conversation*: the id the client sends in
``_meta["mcplane/conversation"]`` (2026-07-28 is stateless, so a client-chosen id is the
carrier), else the transport session id of a 2025-11-25 client. A call with neither gets
``invalid_arguments`` when it touches the state. Every key is also namespaced by the
**principal** (tenant and subject): another principal that guesses a conversation id sees an
empty state, never someone else's. All keys of one conversation share one hash tag.

**Values** are JSON only (``None``, bools, numbers, strings, lists, dicts with string keys;
no NaN or infinity), at most ``max_value_bytes`` encoded: anything else raises
:class:`~mcplane.errors.InvalidArguments` and nothing is stored. Every write sets the key's time
to live (``ttl`` or the configured default); reads do not extend it.

**Backends.** A :class:`StateStore` stores bytes with atomic verbs (``set`` with
``if_absent``, ``compare_and_set``, ``incr``); :class:`MemoryStateStore` serves one process,
:class:`RedisStateStore` every replica sharing a Redis (``{prefix}state:{{tag}}:{key}``).
The state layer **fails closed**: a store that cannot be reached raises
``dependency_unavailable`` to the tool, and so to its caller.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from mcplane.backends.clock import Clock, monotonic
from mcplane.backends.keys import DEFAULT_PREFIX, check_prefix, tag_for
from mcplane.errors import DependencyUnavailable, InvalidArguments
from mcplane.sdk_adapter.context import server_of

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from mcplane.context import Context

__all__ = [
    "CONVERSATION_META_KEY",
    "MemoryStateStore",
    "RedisStateStore",
    "State",
    "StateSpace",
    "StateStore",
    "bind_state",
]

CONVERSATION_META_KEY = "mcplane/conversation"
"""``_meta`` key carrying the client's conversation id."""
MAX_KEY_LENGTH = 256
MAX_CONVERSATION_LENGTH = 256
MAX_DEPTH = 64
UPDATE_ATTEMPTS = 64
_INT64 = 2**63
_INTEGER = re.compile(rb"-?[1-9][0-9]{0,19}|0")


class StateStore(Protocol):
    """Bytes by key with a TTL and atomic verbs. Every implementation passes
    ``tests/backends/test_state_contract.py``. ``ttl`` is seconds (> 0)."""

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl: float, *, if_absent: bool = False) -> bool:
        """Store ``value``; with ``if_absent`` only when the key holds nothing. ``True`` if written."""
        ...

    async def delete(self, key: str) -> bool:
        """``True`` if the key held a value."""
        ...

    async def compare_and_set(self, key: str, expected: bytes | None, value: bytes | None, ttl: float) -> bool:
        """If the key holds ``expected`` (``None``: nothing), store ``value`` (``None``: delete).

        Otherwise change nothing. ``True`` if it stored.
        """
        ...

    async def incr(self, key: str, amount: int, ttl: float) -> int:
        """Add ``amount`` to the integer the key holds (0 when absent); the new value.

        Raises ``InvalidArguments`` (and changes nothing) when the key holds anything else.
        """
        ...


def _ttl_ms(ttl: float) -> int:
    if not ttl > 0:
        raise ValueError(f"a state TTL must be positive, got {ttl}")
    return max(1, round(ttl * 1000))


def _not_an_integer() -> InvalidArguments:
    return InvalidArguments("the state value is not an integer that can be incremented")


class MemoryStateStore:
    """State in process memory (one replica only); expiry is read from the injected clock."""

    def __init__(self, *, clock: Clock = monotonic, sweep_every: int = 1024) -> None:
        self._clock = clock
        self._entries: dict[str, tuple[bytes, float]] = {}
        self._sweep_every = sweep_every
        self._ops = 0

    def _live(self, key: str) -> bytes | None:
        now = self._clock()
        self._ops += 1
        if self._ops % self._sweep_every == 0:
            for old in [k for k, (_, end) in self._entries.items() if end <= now]:
                del self._entries[old]
        entry = self._entries.get(key)
        if entry is None or entry[1] <= now:
            self._entries.pop(key, None)
            return None
        return entry[0]

    def _put(self, key: str, value: bytes, ttl: float) -> None:
        self._entries[key] = (bytes(value), self._clock() + _ttl_ms(ttl) / 1000)

    async def get(self, key: str) -> bytes | None:
        return self._live(key)

    async def set(self, key: str, value: bytes, ttl: float, *, if_absent: bool = False) -> bool:
        _ttl_ms(ttl)
        if if_absent and self._live(key) is not None:
            return False
        self._put(key, value, ttl)
        return True

    async def delete(self, key: str) -> bool:
        return self._live(key) is not None and self._entries.pop(key, None) is not None

    async def compare_and_set(self, key: str, expected: bytes | None, value: bytes | None, ttl: float) -> bool:
        _ttl_ms(ttl)
        if self._live(key) != expected:
            return False
        if value is None:
            self._entries.pop(key, None)
        else:
            self._put(key, value, ttl)
        return True

    async def incr(self, key: str, amount: int, ttl: float) -> int:
        _ttl_ms(ttl)
        current = self._live(key)
        number = 0 if current is None else _stored_int(current)
        number += amount
        if not -_INT64 <= number < _INT64:
            raise _not_an_integer()
        self._put(key, str(number).encode(), ttl)
        return number

    def __len__(self) -> int:
        return len(self._entries)


def _stored_int(raw: bytes) -> int:
    """The integer a stored value holds, with Redis' rules (``INCRBY`` accepts only a plain integer)."""
    if _INTEGER.fullmatch(raw) is None:
        raise _not_an_integer()
    number = int(raw)
    if not -_INT64 <= number < _INT64:
        raise _not_an_integer()
    return number


CAS_LUA = """
-- KEYS[1]. ARGV: expect_absent (0|1), expected, delete (0|1), value, ttl_ms
local current = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if current then return 0 end
elseif current ~= ARGV[2] then
  return 0
end
if ARGV[3] == '1' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[4], 'PX', ARGV[5])
end
return 1
"""

INCR_LUA = """
-- KEYS[1]. ARGV: amount, ttl_ms
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return value
"""


class RedisStateStore:
    """State as Redis strings with PX expiry; compare-and-set and increment are one Lua script each."""

    component = "session state store"

    def __init__(self, client: Redis, *, prefix: str = DEFAULT_PREFIX) -> None:
        from mcplane.backends.redis import check_client

        check_client(client)
        self._client = client
        self._prefix = check_prefix(prefix) + "state:"
        self._cas = client.register_script(CAS_LUA)
        self._incr = client.register_script(INCR_LUA)

    async def get(self, key: str) -> bytes | None:
        from mcplane.backends.redis import unavailable

        with unavailable(self.component):
            value = await self._client.get(self._prefix + key)
        return value if value is None or isinstance(value, bytes) else str(value).encode()

    async def set(self, key: str, value: bytes, ttl: float, *, if_absent: bool = False) -> bool:
        from mcplane.backends.redis import unavailable

        ttl_ms = _ttl_ms(ttl)
        with unavailable(self.component):
            done = await self._client.set(self._prefix + key, value, px=ttl_ms, nx=if_absent)
        return bool(done)

    async def delete(self, key: str) -> bool:
        from mcplane.backends.redis import unavailable

        with unavailable(self.component):
            return bool(await self._client.delete(self._prefix + key))

    async def compare_and_set(self, key: str, expected: bytes | None, value: bytes | None, ttl: float) -> bool:
        from mcplane.backends.redis import unavailable

        args: list[Any] = [int(expected is None), expected or b"", int(value is None), value or b"", _ttl_ms(ttl)]
        with unavailable(self.component):
            return bool(await self._cas(keys=[self._prefix + key], args=args))

    async def incr(self, key: str, amount: int, ttl: float) -> int:
        from redis.exceptions import ResponseError

        from mcplane.backends.redis import unavailable

        ttl_ms = _ttl_ms(ttl)
        try:
            with unavailable(self.component):
                value: Any = await self._incr(keys=[self._prefix + key], args=[amount, ttl_ms])
                return int(value)
        except ResponseError as exc:
            if "not an integer" in str(exc) or "overflow" in str(exc):
                raise _not_an_integer() from None
            raise


# ---------------------------------------------------------------------------------------------- the handle
def encode(value: Any, max_bytes: int) -> bytes:
    """Canonical JSON of ``value``; ``InvalidArguments`` when it is not JSON or is too large."""
    _check_json(value, 0)
    data = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
    if len(data) > max_bytes:
        raise InvalidArguments(
            f"the state value is {len(data)} bytes of JSON, more than the {max_bytes} allowed",
            details={"max_value_bytes": max_bytes},
        )
    return data


def _check_json(value: Any, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise InvalidArguments(f"the state value is nested more than {MAX_DEPTH} levels deep")
    if value is None or isinstance(value, bool | int | str):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidArguments("the state value holds a NaN or infinite number, which JSON cannot carry")
        return
    if isinstance(value, list | tuple):
        for item in value:  # pyright: ignore[reportUnknownVariableType]
            _check_json(item, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():  # pyright: ignore[reportUnknownVariableType]
            if not isinstance(key, str):
                raise InvalidArguments("the state value has a dict key that is not a string")
            _check_json(item, depth + 1)
        return
    raise InvalidArguments(f"the state value holds a {type(value).__name__}, which is not JSON")


@dataclass(frozen=True, slots=True)
class StateSpace:
    """What a running plane binds ``ctx.state`` to: the store and the ``state:`` section's limits."""

    store: StateStore
    ttl: float = 86_400.0
    max_value_bytes: int = 65_536


class State:
    """One conversation's state, as a tool sees it (``ctx.state``). See the module doc."""

    __slots__ = ("_namespace", "_space", "_unscoped")

    def __init__(self, space: StateSpace, namespace: str | None, unscoped: str = "") -> None:
        self._space = space
        self._namespace = namespace
        self._unscoped = unscoped

    @property
    def scoped(self) -> bool:
        """Whether the call has a conversation (or session) to keep state for."""
        return self._namespace is not None

    def _key(self, key: str) -> str:
        if self._namespace is None:
            raise InvalidArguments(self._unscoped, details={"meta_key": CONVERSATION_META_KEY})
        if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH:  # pyright: ignore[reportUnnecessaryIsInstance]
            raise InvalidArguments(f"a state key must be a non-empty string of at most {MAX_KEY_LENGTH} characters")
        return f"{self._namespace}:{key}"

    def _ttl(self, ttl: float | None) -> float:
        if ttl is None:
            return self._space.ttl
        if not ttl > 0:
            raise InvalidArguments(f"a state TTL must be positive, got {ttl!r}")
        return ttl

    async def get(self, key: str, default: Any = None) -> Any:
        """The value stored under ``key``, or ``default`` when absent or expired."""
        raw = await self._space.store.get(self._key(key))
        return default if raw is None else json.loads(raw)

    async def set(self, key: str, value: Any, ttl: float | None = None, *, if_absent: bool = False) -> bool:
        """Store ``value`` for ``ttl`` seconds; with ``if_absent``, only if ``key`` holds nothing.

        Returns whether it was written (always ``True`` without ``if_absent``).
        """
        full = self._key(key)
        data = encode(value, self._space.max_value_bytes)
        return await self._space.store.set(full, data, self._ttl(ttl), if_absent=if_absent)

    async def delete(self, key: str) -> bool:
        """Forget ``key``; ``True`` if it held a value."""
        return await self._space.store.delete(self._key(key))

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """Add ``amount`` to the integer under ``key`` (0 when absent) atomically; the new value."""
        if isinstance(amount, bool) or not isinstance(amount, int):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise InvalidArguments("a state increment must be an int")
        return await self._space.store.incr(self._key(key), amount, self._ttl(ttl))

    async def update(self, key: str, fn: Callable[[Any], Any], *, default: Any = None, ttl: float | None = None) -> Any:
        """Replace the value with ``fn(value)`` (``fn(default)`` when absent) atomically; the new value.

        Optimistic: read, compute, then compare-and-set; when another writer got there first, read
        again and retry (``fn`` may run more than once, so keep it free of side effects). Returning
        ``None`` from ``fn`` deletes the key.
        """
        full = self._key(key)
        ttl_s = self._ttl(ttl)
        store = self._space.store
        for _ in range(UPDATE_ATTEMPTS):
            raw = await store.get(full)
            new = fn(default if raw is None else json.loads(raw))
            data = None if new is None else encode(new, self._space.max_value_bytes)
            if await store.compare_and_set(full, raw, data, ttl_s):
                return new
        raise DependencyUnavailable(
            "the session state is too contended to update; retry", details={"reason": "contended"}
        )


def conversation_of(meta: Mapping[str, Any]) -> str | None:
    """The conversation id in a request's ``_meta``, checked; ``None`` when there is none."""
    value = meta.get(CONVERSATION_META_KEY)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_CONVERSATION_LENGTH or not value.isprintable():
        raise InvalidArguments(
            f"_meta[{CONVERSATION_META_KEY!r}] must be a printable string of 1 to {MAX_CONVERSATION_LENGTH} characters"
        )
    return value


def bind_state(ctx: Context, space: StateSpace | None = None) -> State:
    """``ctx.state``: the state of the call's conversation (else session), for its principal.

    ``space`` defaults to the running plane's (its ``state:`` section); outside a running plane
    there is none and ``LookupError`` is raised.
    """
    if space is None:
        plane = getattr(server_of(ctx), "plane", None)
        space = getattr(getattr(plane, "layers", None), "state", None)
        if space is None:
            raise LookupError("session state needs a running plane (ctx.state is bound when the plane starts)")
    conversation = conversation_of(ctx.request_meta)
    scope = ("conversation", conversation) if conversation is not None else None
    if scope is None and (session := ctx.session_id):
        scope = ("session", session)
    if scope is None:
        reason = (
            f"this tool keeps state between calls: send a conversation id in _meta[{CONVERSATION_META_KEY!r}] "
            "(or use a 2025-11-25 session)"
        )
        return State(space, None, reason)
    principal = ctx.principal
    return State(space, tag_for("state", principal.tenant, principal.subject, *scope))
