"""API keys, stored as SHA-256 digests and compared in constant time.

Why SHA-256 and not a password KDF (scrypt, Argon2)? A KDF's cost exists to slow down guessing
of *low-entropy* secrets chosen by people. API keys are not chosen: :func:`generate_api_key`
draws 256 random bits, and no amount of hashing speed makes a 2^256 pre-image search
feasible, so a leaked config file of digests gives nothing away. A KDF would, on the other
hand, put tens of milliseconds of CPU on every request, which is a denial-of-service lever
for anyone who can send garbage keys. Mint keys only with :func:`generate_api_key` (or another
source of at least 128 random bits); a short human-chosen key is what a KDF would be for.

Every presented key is hashed once and compared with *every* stored digest using
:func:`hmac.compare_digest`, with no early exit, so timing reveals neither which key matched
nor how many bytes did.

Keys are accepted in ``X-API-Key: <key>`` (the header name is configurable) and, unless turned
off, as ``Authorization: Bearer <key>`` when the value is not shaped like a JWT.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from types import MappingProxyType

from mcplane.auth.claims import safe_label
from mcplane.auth.config import APIKey
from mcplane.auth.errors import AuthenticationFailed
from mcplane.context import Principal

__all__ = ["APIKeyVerifier", "generate_api_key", "hash_api_key"]

MAX_API_KEY_CHARS = 512


def hash_api_key(key: str) -> str:
    """The value to put in config for ``key``: ``sha256:<hex digest>``."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def generate_api_key(prefix: str = "mcp_") -> tuple[str, str]:
    """A new random key (256 bits) and its config digest: ``(key, "sha256:...")``."""
    key = prefix + secrets.token_urlsafe(32)
    return key, hash_api_key(key)


class APIKeyVerifier:
    def __init__(self, keys: Sequence[APIKey]) -> None:
        self._entries = [(bytes.fromhex(key.hash), key) for key in keys]

    def __len__(self) -> int:
        return len(self._entries)

    def verify(self, presented: str) -> Principal:
        if not presented or len(presented) > MAX_API_KEY_CHARS:
            raise AuthenticationFailed("invalid_token")
        digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
        match: APIKey | None = None
        for stored, entry in self._entries:
            if hmac.compare_digest(stored, digest) and match is None:
                match = entry
        if match is None:
            raise AuthenticationFailed("invalid_token")
        return Principal(
            subject=safe_label(match.subject),
            roles=frozenset(match.roles),
            scopes=frozenset(match.scopes),
            tenant=match.tenant,
            claims=MappingProxyType({"auth_method": "api_key", "api_key_id": match.key_id}),
        )
