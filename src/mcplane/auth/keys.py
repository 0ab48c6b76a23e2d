"""Verification keys, each pinned to the one algorithm its type allows.

Pinning is what stops algorithm confusion: the algorithm a token may use is decided by the key
that verifies it, never by the token. An RSA public key verifies RS256 only, an EC P-256 key
ES256 only, an HMAC secret HS256 only; a token whose ``alg`` differs from its key's is refused
before any signature check runs, so an RSA public key can never be fed to HMAC as a secret.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt import PyJWK
from jwt.exceptions import PyJWTError

__all__ = ["Algorithm", "VerificationKey", "key_from_jwk", "load_pem_public_key"]

logger = logging.getLogger("mcplane.auth")

Algorithm = Literal["HS256", "RS256", "ES256"]
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
MIN_RSA_BITS = 2048


@dataclass(frozen=True, slots=True)
class VerificationKey:
    kid: str | None
    algorithm: Algorithm
    """The only algorithm this key may verify."""
    key: bytes | PublicKey


def _pinned(key: Any) -> tuple[Algorithm, PublicKey]:
    if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        key = key.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(f"RSA keys must have at least {MIN_RSA_BITS} bits")
        return "RS256", key
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise ValueError("EC keys must be on the P-256 curve (ES256)")
        return "ES256", key
    raise ValueError("only RSA (RS256) and EC P-256 (ES256) public keys are supported")


def load_pem_public_key(pem: str) -> tuple[Algorithm, PublicKey]:
    """A PEM ``PUBLIC KEY`` → (pinned algorithm, key). Raises ``ValueError`` on anything else."""
    if "PRIVATE KEY" in pem:
        raise ValueError("configure the public key, not the private key")
    try:
        key = serialization.load_pem_public_key(pem.strip().encode())
    except (ValueError, TypeError) as exc:
        raise ValueError("not a PEM public key") from exc
    return _pinned(key)


def key_from_jwk(jwk: Mapping[str, Any], allowed: frozenset[str]) -> VerificationKey | None:
    """One JWKS entry → a key, or ``None`` (logged) when it cannot verify allowed signatures.

    Skipped: symmetric (``oct``) keys, which have no place in a published key set; keys whose
    ``use`` is not ``sig``; keys whose ``alg`` or type maps to an algorithm not allowed.
    """
    kid = jwk.get("kid")
    if not isinstance(kid, str) or not kid:
        kid = None
    if jwk.get("kty") not in ("RSA", "EC"):
        logger.info("JWKS: skipping key %r of type %r", kid, jwk.get("kty"))
        return None
    if jwk.get("use", "sig") != "sig":
        return None
    try:
        parsed = PyJWK(dict(jwk))
        algorithm, key = _pinned(parsed.key)
    except (PyJWTError, ValueError, TypeError) as exc:
        logger.info("JWKS: skipping key %r: %s", kid, exc)
        return None
    if parsed.algorithm_name != algorithm or algorithm not in allowed:
        logger.info("JWKS: skipping key %r: algorithm %r not allowed", kid, parsed.algorithm_name)
        return None
    return VerificationKey(kid, algorithm, key)
