"""The access tokens mcplane issues: ES256 JWTs, signed by the active key, verified by every
key not yet retired (rotation with overlap), published as a JWKS.

PyJWT signs (it already verifies every bearer token in :mod:`mcplane.auth.tokens`) and
``cryptography`` holds the keys; nothing here parses a token from outside.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from mcplane.auth.config import JWTConfig, StaticKey

__all__ = ["IssuerKeys", "load_private_key"]

logger = logging.getLogger("mcplane.oauth")


def load_private_key(pem: str) -> ec.EllipticCurvePrivateKey:
    """An EC P-256 private key from PEM, or ``ValueError`` (which never quotes the key)."""
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        raise ValueError("not a PEM private key (an unencrypted EC P-256 key is needed)") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("an ES256 signing key must be an EC P-256 private key")
    return key


@dataclass(frozen=True, slots=True)
class _Key:
    kid: str
    private: ec.EllipticCurvePrivateKey

    @property
    def public_pem(self) -> str:
        return (
            self.private.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )

    def jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = json.loads(ECAlgorithm.to_jwk(self.private.public_key()))
        jwk.update(kid=self.kid, use="sig", alg="ES256")
        return jwk


class IssuerKeys:
    """The configured keys (or one generated for this process when none are configured)."""

    def __init__(self, configured: Sequence[tuple[str, str, str]], *, clock: Callable[[], float] = time.time) -> None:
        """``configured``: ``(kid, private PEM, status)`` per key."""
        self._clock = clock
        if configured:
            self.published = tuple(
                _Key(kid, load_private_key(pem)) for kid, pem, status in configured if status != "retired"
            )
            self.active = next(
                _Key(kid, load_private_key(pem)) for kid, pem, status in configured if status == "active"
            )
        else:
            logger.warning(
                "oauth.signing_keys is empty: tokens are signed with a key generated for this process "
                "(they stop verifying when it restarts, and other replicas do not accept them)"
            )
            self.active = _Key(f"generated-{uuid.uuid4().hex[:8]}", ec.generate_private_key(ec.SECP256R1()))
            self.published = (self.active,)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.jwk() for key in self.published]}

    def sign(self, claims: Mapping[str, Any], ttl: float) -> tuple[str, int]:
        """A token carrying ``claims`` plus ``iat``/``nbf``/``exp``/``jti``; and its lifetime in seconds."""
        now = int(self._clock())
        lifetime = max(1, int(ttl))
        body = {**claims, "iat": now, "nbf": now, "exp": now + lifetime, "jti": uuid.uuid4().hex}
        headers = {"kid": self.active.kid, "typ": "at+jwt"}
        return jwt.encode(body, self.active.private, algorithm="ES256", headers=headers), lifetime

    def claims_of(self, token: str) -> dict[str, Any] | None:
        """The claims of a token these keys signed (expired or not), else ``None``."""
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError:
            return None
        for key in self.published:
            if key.kid == kid:
                try:
                    return jwt.decode(
                        token,
                        key.private.public_key(),
                        algorithms=["ES256"],
                        options={"verify_exp": False, "verify_aud": False, "verify_iat": False, "verify_nbf": False},
                    )
                except jwt.PyJWTError:
                    return None
        return None

    def verification(self, issuer: str, audience: str) -> JWTConfig:
        """The auth layer's view: these public keys, this issuer, this audience, ES256 only."""
        keys = [StaticKey(kid=key.kid, pem=key.public_pem) for key in self.published]
        return JWTConfig(issuer=issuer, audience=audience, algorithms=["ES256"], keys=keys, leeway=5.0)
