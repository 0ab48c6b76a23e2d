"""What a 2025-11-25 session keeps by its id rather than in its SDK ``Connection``.

A session dropped while idle (``sessions.idle_timeout``), or continued on another replica, is
adopted again from its sealed id into a new ``Connection``
(:meth:`~mcplane.transports.sessions.SessionManager.adopt`): whatever a handler kept on the old
``Connection`` is gone. A handler that wants something back writes it to the session's **state
record** (:meth:`SessionState.write`, a few plain JSON values by key) and registers a
**restorer** (:attr:`SessionState.restorers`), called with the new ``Connection`` and the record
whenever the session is adopted. The gateway keeps a session's ``logging/setLevel`` floor and its
``resources/subscribe`` URIs this way (:mod:`mcplane.gateway.handlers`).

Records are small and bounded: at most :data:`MAX_KEYS` keys and :data:`MAX_BYTES` bytes of JSON
each, at most :data:`MAX_RECORDS` kept in a process (the oldest go first), and a record expires
with its session id (``sessions.ttl``). A ``DELETE`` forgets it. Where sessions check revocations
in Redis (``redis_url``), records are kept there too, as one hash per session that expires with the
id, so the replica that adopts the session reads it (once, on adoption, as the revocation check);
without Redis they live in the process that wrote them, which is where a dropped session comes back
to when there is one replica. The state of a session goes with the plane (one :class:`SessionState`
per served plane, :func:`session_state`), whatever session manager serves it.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import orjson

from mcplane.sdk_adapter.mcpserver import lowlevel_server

if TYPE_CHECKING:
    from mcp.server.connection import Connection

    from mcplane.app import Plane
    from mcplane.transports.sealing import Revocations, SessionClaims, SessionSealer

__all__ = ["MAX_BYTES", "MAX_KEYS", "MAX_RECORDS", "Restorer", "SessionState", "plane_session_state", "session_state"]

logger = logging.getLogger("mcplane.sessions")

MAX_KEYS = 16
"""Keys in one session's record at most."""
MAX_BYTES = 4096
"""JSON bytes of one session's record at most."""
MAX_RECORDS = 100_000
"""Records kept in one process at most (the oldest are forgotten first)."""

Restorer = Callable[["Connection", Mapping[str, Any]], Awaitable[None] | None]
"""Called with an adopted session's new ``Connection`` and its record (``{}``: none), before
its server loop serves anything; an awaitable it returns (slow work: an upstream round trip) is
awaited before the request that adopted the session is served (errors logged)."""


class SessionState:
    """The state records of one plane's sessions, by session id (see the module doc)."""

    def __init__(self) -> None:
        self.restorers: list[Restorer] = []
        self._sealer: SessionSealer | None = None
        self._revocations: Revocations | None = None
        self._local: dict[str, tuple[float, dict[str, Any]]] = {}
        """sid → (expiry, record)."""

    def bind(self, sealer: SessionSealer, revocations: Revocations) -> None:
        """Use a session manager's sealer (ids and their expiry) and its Redis client, when it has one."""
        self._sealer = sealer
        self._revocations = revocations

    def _key(self, sid: str) -> str:
        prefix = self._revocations.prefix if self._revocations is not None else "mcplane:"
        return f"{prefix}session-state:{{{sid}}}"

    def _redis(self) -> Any:
        return self._revocations.redis if self._revocations is not None else None

    def _claims(self, session_id: str | None) -> SessionClaims | None:
        if session_id is None or self._sealer is None:
            return None
        return self._sealer.unseal(session_id)

    def _record(self, sid: str) -> dict[str, Any] | None:
        found = self._local.get(sid)
        if found is None:
            return None
        expiry, record = found
        if self._sealer is not None and expiry <= self._sealer.clock():
            del self._local[sid]
            return None
        return record

    def _keep(self, sid: str, expiry: float, record: dict[str, Any]) -> None:
        local = self._local
        local.pop(sid, None)
        if not record:
            return
        if len(local) >= MAX_RECORDS:
            now = self._sealer.clock() if self._sealer is not None else 0.0
            for old in [old for old, (until, _) in local.items() if until <= now]:
                del local[old]
            while len(local) >= MAX_RECORDS:
                del local[next(iter(local))]
        local[sid] = (expiry, record)

    def local(self, session_id: str) -> dict[str, Any]:
        """A copy of the record this process holds for ``session_id`` (``{}``: none)."""
        claims = self._claims(session_id)
        record = self._record(claims.sid) if claims is not None else None
        return dict(record) if record is not None else {}

    async def write(self, session_id: str | None, key: str, value: Any) -> bool:
        """Set ``key`` of the session's record to ``value`` (plain JSON; ``None`` removes it).

        False, and nothing written, when ``session_id`` is not a session id of this plane, or the
        record would grow past :data:`MAX_KEYS` or :data:`MAX_BYTES`. When Redis cannot be written
        the record is kept here only (logged): the session's state applies, only an adoption
        elsewhere will not see it.
        """
        claims = self._claims(session_id)
        if claims is None or self._sealer is None:
            return False
        record = dict(self._record(claims.sid) or {})
        if value is None:
            record.pop(key, None)
        else:
            record[key] = value
        encoded = {name: orjson.dumps(item) for name, item in record.items()}
        if len(record) > MAX_KEYS or sum(len(name) + len(item) for name, item in encoded.items()) > MAX_BYTES:
            logger.warning(
                "session state of %s… not kept: over %d keys or %d bytes", claims.sid[:8], MAX_KEYS, MAX_BYTES
            )
            return False
        expiry = claims.issued_at + self._sealer.ttl
        self._keep(claims.sid, expiry, record)
        redis = self._redis()
        if redis is None:
            return True
        from mcplane.backends.redis import unavailable

        name = self._key(claims.sid)
        ttl_ms = max(1, int(self._sealer.remaining(claims) * 1000))
        try:
            with unavailable("session state"):
                async with redis.pipeline(transaction=False) as pipe:
                    if value is None:
                        pipe.hdel(name, key)
                    else:
                        pipe.hset(name, key, encoded[key])
                    pipe.pexpire(name, ttl_ms)
                    await pipe.execute()
        except Exception as exc:
            logger.warning("session state of %s… kept on this replica only: %s", claims.sid[:8], type(exc).__name__)
        return True

    async def read(self, claims: SessionClaims) -> dict[str, Any]:
        """The record of the session ``claims`` name: Redis's when configured, else this process's."""
        redis = self._redis()
        if redis is None:
            return dict(self._record(claims.sid) or {})
        from mcplane.backends.redis import unavailable

        try:
            with unavailable("session state"):
                raw: Any = await redis.hgetall(self._key(claims.sid))
        except Exception as exc:
            logger.warning(
                "session state of %s… unreadable (%s): this replica's copy", claims.sid[:8], type(exc).__name__
            )
            return dict(self._record(claims.sid) or {})
        record: dict[str, Any] = {}
        for name, item in dict(raw).items():
            try:
                record[name.decode() if isinstance(name, bytes) else str(name)] = orjson.loads(item)
            except orjson.JSONDecodeError:
                continue
        if self._sealer is not None:
            self._keep(claims.sid, claims.issued_at + self._sealer.ttl, record)
        return record

    async def forget(self, claims: SessionClaims) -> None:
        """The session ended: drop its record (here, and in Redis when configured)."""
        self._local.pop(claims.sid, None)
        redis = self._redis()
        if redis is None:
            return
        from mcplane.backends.redis import unavailable

        try:
            with unavailable("session state"):
                await redis.delete(self._key(claims.sid))
        except Exception as exc:  # it expires with the id
            logger.warning("could not drop the session state in Redis: %s", type(exc).__name__)

    def forget_here(self, sid: str) -> None:
        """The session ended elsewhere: drop this process's copy of its record."""
        self._local.pop(sid, None)

    def restore(self, connection: Connection, record: Mapping[str, Any]) -> list[Awaitable[None]]:
        """Hand ``record`` to every restorer for the adopted session's ``connection``; their awaitables."""
        pending: list[Awaitable[None]] = []
        for restorer in list(self.restorers):
            try:
                more = restorer(connection, record)
            except Exception:
                logger.exception("restoring a session's state failed")
                continue
            if more is not None:
                pending.append(more)
        return pending


_STATES: weakref.WeakKeyDictionary[Any, SessionState] = weakref.WeakKeyDictionary()


def session_state(server: Any) -> SessionState:
    """The :class:`SessionState` of the sessions served by ``server`` (the plane's low-level SDK server)."""
    state = _STATES.get(server)
    if state is None:
        state = _STATES[server] = SessionState()
    return state


def plane_session_state(plane: Plane) -> SessionState:
    """The :class:`SessionState` of ``plane``'s sessions (what its handlers write and restore)."""
    return session_state(lowlevel_server(plane.sdk))
