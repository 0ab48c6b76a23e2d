"""The authorization server's records in the state backend: encrypted, expiring, taken once.

Every record (a registered client, a pending authorization, a code, a refresh token) is JSON
sealed with AES-256-GCM under the first of the configured state keys; the record's own key
name is the associated data, so a sealed value copied under another name does not open. Old
keys still open what they sealed (rotation). A record named by a secret (a code, a refresh
token) is stored under the secret's SHA-256, never under the secret itself.

:meth:`OAuthStore.take` reads and deletes in one compare-and-set: of two replicas redeeming the
same code at once, exactly one gets the record.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from mcplane.backends.state import StateStore

__all__ = ["OAuthStore", "StateCipher", "digest"]

PREFIX = "oauth:"
_NONCE = 12
_KEY_ID = 4


def digest(secret: str) -> str:
    """The name a secret value is stored under: its SHA-256, hex."""
    return hashlib.sha256(secret.encode()).hexdigest()


def _derive(secret: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"mcplane oauth state v1").derive(secret)


class StateCipher:
    """AES-GCM with key rotation: ``key id (4) | nonce (12) | ciphertext+tag``."""

    def __init__(self, secrets: Sequence[bytes]) -> None:
        keys = [_derive(secret) for secret in secrets] or [os.urandom(32)]
        self._keys = {hashlib.sha256(key).digest()[:_KEY_ID]: AESGCM(key) for key in keys}
        self._first = hashlib.sha256(keys[0]).digest()[:_KEY_ID]

    def seal(self, data: bytes, name: str) -> bytes:
        nonce = os.urandom(_NONCE)
        return self._first + nonce + self._keys[self._first].encrypt(nonce, data, name.encode())

    def open(self, sealed: bytes, name: str) -> bytes | None:
        """The plaintext, or ``None`` when no key opens it (unknown key, tampered, moved)."""
        aead = self._keys.get(sealed[:_KEY_ID])
        if aead is None or len(sealed) < _KEY_ID + _NONCE + 16:
            return None
        try:
            return aead.decrypt(sealed[_KEY_ID : _KEY_ID + _NONCE], sealed[_KEY_ID + _NONCE :], name.encode())
        except Exception:  # InvalidTag: tampered, or sealed under another name
            return None


class OAuthStore:
    """JSON records by ``kind`` and ``name`` over a :class:`~mcplane.backends.state.StateStore`."""

    def __init__(self, store: StateStore, cipher: StateCipher, *, prefix: str = PREFIX) -> None:
        self.store = store
        self.cipher = cipher
        self.prefix = prefix

    def _key(self, kind: str, name: str) -> str:
        return f"{self.prefix}{kind}:{name}"

    async def incr(self, kind: str, name: str, amount: int, ttl: float) -> int:
        """A counter beside the records (not sealed: it holds no secret)."""
        return await self.store.incr(self._key(kind, name), amount, ttl)

    async def put(self, kind: str, name: str, record: dict[str, Any], ttl: float, *, if_absent: bool = False) -> bool:
        key = self._key(kind, name)
        data = json.dumps(record, separators=(",", ":")).encode()
        return await self.store.set(key, self.cipher.seal(data, key), ttl, if_absent=if_absent)

    async def get(self, kind: str, name: str) -> dict[str, Any] | None:
        key = self._key(kind, name)
        sealed = await self.store.get(key)
        return None if sealed is None else self._open(sealed, key)

    async def take(self, kind: str, name: str) -> dict[str, Any] | None:
        """Read and delete atomically: ``None`` when absent or when another caller took it first."""
        key = self._key(kind, name)
        sealed = await self.store.get(key)
        if sealed is None:
            return None
        if not await self.store.compare_and_set(key, sealed, None, 1.0):
            return None
        return self._open(sealed, key)

    async def delete(self, kind: str, name: str) -> bool:
        return await self.store.delete(self._key(kind, name))

    def _open(self, sealed: bytes, key: str) -> dict[str, Any] | None:
        data = self.cipher.open(sealed, key)
        if data is None:
            return None
        record: Any = json.loads(data)
        return record if isinstance(record, dict) else None  # pyright: ignore[reportUnknownVariableType]
