"""Sealed session ids: what a 2025-11-25 session id carries, the keys that seal it, and revocation.

See :mod:`mcplane.transports.sessions` for why session state travels in the id. The id is the
SDK's request-state codec (AES-256-GCM, a key ring: ``keys[0]`` seals, all unseal) over keys
derived for this purpose only (:func:`derive_key`), so a configured secret that also seals
``requestState`` never seals both kinds of token with one key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from mcp.server.auth.middleware.bearer_auth import AuthorizationContext
from mcp.server.request_state import AESGCMRequestStateCodec, InvalidRequestState
from mcp_types import InitializeRequestParams
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION
from pydantic import ValidationError

__all__ = [
    "REQUEST_STATE_PURPOSE",
    "SESSION_PURPOSE",
    "Revocations",
    "SessionClaims",
    "SessionSealer",
    "derive_key",
]

SESSION_PURPOSE = b"mcplane/session-id/v1"
REQUEST_STATE_PURPOSE = b"mcplane/request-state/v1"
_FUTURE_SKEW = 60.0
_COMPRESS_OVER = 200


def derive_key(secret: bytes, purpose: bytes) -> bytes:
    """A 32-byte key for one purpose, so one configured secret never seals two kinds of token."""
    return hmac.new(secret, purpose, hashlib.sha256).digest()


@dataclass(frozen=True, slots=True)
class SessionClaims:
    """What a sealed session id carries."""

    sid: str
    """A random id of the session (names its revocation)."""
    protocol_version: str
    params: Mapping[str, Any] | None
    """The client's ``initialize`` params (``None``: the opening request was no valid ``initialize``)."""
    owner: Mapping[str, Any] | None
    """The credential that opened the session (the SDK's ``AuthorizationContext``), if any."""
    issued_at: float


class SessionSealer:
    """Seals :class:`SessionClaims` into a session id and back; ``keys[0]`` seals, all unseal."""

    def __init__(self, keys: Sequence[bytes], *, ttl: float, clock: Callable[[], float] = time.time) -> None:
        if not keys:
            raise ValueError("a session sealer needs at least one key")
        self._codec = AESGCMRequestStateCodec([derive_key(key, SESSION_PURPOSE) for key in keys])
        self.ttl = ttl
        self.clock = clock

    @classmethod
    def ephemeral(cls, *, ttl: float) -> SessionSealer:
        """A key drawn now, known to this process only: sessions stay on the process that opened them."""
        return cls([os.urandom(32)], ttl=ttl)

    def seal(self, claims: SessionClaims) -> str:
        payload = orjson.dumps(
            {
                "s": claims.sid,
                "v": claims.protocol_version,
                "p": claims.params,
                "o": claims.owner,
                "t": round(claims.issued_at, 3),
            }
        )
        packed = b"z" + zlib.compress(payload, 9) if len(payload) > _COMPRESS_OVER else b"j" + payload
        return self._codec.seal(packed)

    def unseal(self, session_id: str) -> SessionClaims | None:
        """The claims of a genuine, unexpired id; ``None`` for anything else (never raises)."""
        try:
            packed = self._codec.unseal(session_id)
            payload = zlib.decompress(packed[1:]) if packed[:1] == b"z" else packed[1:]
            raw = orjson.loads(payload)
            claims = SessionClaims(
                sid=str(raw["s"]),
                protocol_version=str(raw["v"]),
                params=raw["p"],
                owner=raw["o"],
                issued_at=float(raw["t"]),
            )
        except (InvalidRequestState, zlib.error, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None
        now = self.clock()
        if claims.issued_at > now + _FUTURE_SKEW or now >= claims.issued_at + self.ttl:
            return None
        return claims

    def remaining(self, claims: SessionClaims) -> float:
        """Seconds until the id expires."""
        return max(0.0, claims.issued_at + self.ttl - self.clock())

    def opening_claims(self, body: bytes | None, owner: AuthorizationContext | None) -> SessionClaims:
        """Claims for a session opened by ``body`` (the ``initialize`` request), negotiated as the SDK does."""
        params: dict[str, Any] | None = None
        version = LATEST_HANDSHAKE_VERSION
        try:
            message = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            message = None
        if isinstance(message, dict) and message.get("method") == "initialize":
            try:
                init = InitializeRequestParams.model_validate(message.get("params") or {}, by_name=False)
            except ValidationError:
                init = None
            if init is not None:
                requested = init.protocol_version
                version = requested if requested in HANDSHAKE_PROTOCOL_VERSIONS else LATEST_HANDSHAKE_VERSION
                params = init.model_dump(by_alias=True, mode="json", exclude_none=True)
        return SessionClaims(
            sid=secrets.token_hex(12),
            protocol_version=version,
            params=params,
            owner=dict(owner) if owner is not None else None,
            issued_at=round(self.clock(), 3),
        )


class Revocations:
    """Ended sessions: remembered here until they would have expired, and in Redis when there is one."""

    def __init__(self, sealer: SessionSealer, *, prefix: str = "mcplane:") -> None:
        self.sealer = sealer
        self.prefix = prefix
        self.redis: Any = None
        """A ``redis.asyncio`` client, set while the fan-out runs."""
        self._local: dict[str, float] = {}

    def key(self, sid: str) -> str:
        return f"{self.prefix}session-revoked:{{{sid}}}"

    def remember(self, sid: str, until: float) -> None:
        now = self.sealer.clock()
        if len(self._local) >= 1024:
            self._local = {k: v for k, v in self._local.items() if v > now}
        self._local[sid] = until

    def revoked_here(self, sid: str) -> bool:
        until = self._local.get(sid)
        return until is not None and until > self.sealer.clock()

    async def revoked(self, claims: SessionClaims) -> bool:
        """Whether the session was ended (asks Redis when configured; raises DependencyUnavailable)."""
        if self.revoked_here(claims.sid):
            return True
        if self.redis is None:
            return False
        from mcplane.backends.redis import unavailable

        with unavailable("session revocation list"):
            found = await self.redis.exists(self.key(claims.sid))
        if found:
            self.remember(claims.sid, claims.issued_at + self.sealer.ttl)
        return bool(found)

    async def revoke(self, claims: SessionClaims) -> None:
        self.remember(claims.sid, claims.issued_at + self.sealer.ttl)
        if self.redis is None:
            return
        from mcplane.backends.redis import unavailable

        ttl_ms = max(1, int(self.sealer.remaining(claims) * 1000))
        with unavailable("session revocation list"):
            await self.redis.set(self.key(claims.sid), b"1", px=ttl_ms)
