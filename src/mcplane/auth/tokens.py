"""JWT bearer verification: HS256, RS256 and ES256, static keys and/or a JWKS URL.

The order of checks is fixed, so nothing about an unverified token is believed:

1. size cap, then the header parses, names an allowed algorithm (never ``none``) and asks for
   no critical extension (``crit``, ``b64``);
2. the key: by ``kid`` among static keys, then the JWKS (an unknown ``kid`` refreshes it once),
   then static keys without a ``kid``; the key's pinned algorithm must equal the token's;
3. the signature (PyJWT), then ``iss`` and ``aud``;
4. ``exp`` (required) and ``nbf`` against the injected clock, with the configured leeway.

Reason codes: ``invalid_token`` (malformed, disallowed or mismatched algorithm, missing or
ill-typed ``exp``), ``unknown_key``, ``bad_signature``, ``wrong_issuer``, ``wrong_audience``,
``expired``, ``not_yet_valid``.

A client sends the same token on every request until it expires, so a token that passed steps
1 to 3 is remembered (up to :data:`VERIFIED_CACHE_SIZE` tokens, only ever ones that verified):
the next request with the same bytes skips the parsing and the signature check, and only step 4
runs again, against the clock of that request. A remembered token is believed only while the
key that verified it still would: a static key always (the configuration is immutable), a JWKS
key while the key set is fresh (``jwks_max_age``) and still holds it; otherwise the token goes
through every step again, which refreshes the key set as usual.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import httpx
import jwt
from jwt.exceptions import (
    InvalidAudienceError,
    InvalidIssuerError,
    InvalidSignatureError,
    MissingRequiredClaimError,
    PyJWTError,
)
from pydantic import SecretStr

from mcplane.auth.config import JWTConfig
from mcplane.auth.errors import AuthenticationFailed, Reason
from mcplane.auth.jwks import JWKSCache
from mcplane.auth.keys import VerificationKey, load_pem_public_key
from mcplane.errors import DependencyUnavailable

__all__ = ["JWTVerifier", "looks_like_jwt"]

MAX_CANDIDATE_KEYS = 8
"""A token without ``kid`` is tried against at most this many keys."""
VERIFIED_CACHE_SIZE = 1024
"""Tokens whose signature, issuer and audience checked out, remembered (oldest dropped first)."""


class VerifiedToken:
    """A token that passed the signature, issuer and audience checks, and the key that verified it."""

    __slots__ = ("claims", "exp", "key", "nbf", "principal", "static")

    def __init__(self, claims: Mapping[str, Any], key: VerificationKey, *, static: bool) -> None:
        self.claims: Mapping[str, Any] = MappingProxyType(dict(claims))
        self.key = key
        self.static = static
        self.principal: Any = None
        """What the authenticator made of the claims (a pure function of them), kept with the token."""
        self.exp: float = claims["exp"]
        """``exp`` and ``nbf``, read once: the verifier checked they are NumericDates before keeping it."""
        self.nbf: float | None = claims.get("nbf")


def looks_like_jwt(value: str) -> bool:
    """Three non-empty dot-separated segments (JWS compact serialisation; unsecured JWTs have an
    empty third segment and are malformed here)."""
    parts = value.split(".")
    return len(parts) == 3 and all(parts)


class JWTVerifier:
    def __init__(
        self,
        config: JWTConfig,
        *,
        audience: str | list[str] | None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.config = config
        self._audience = audience
        self._clock = clock
        self._algorithms = frozenset(config.algorithms)
        self._static = tuple(_static_key(key.kid, key.secret, key.pem) for key in config.keys)
        self._verified: dict[str, VerifiedToken] = {}
        self.jwks: JWKSCache | None = None
        if config.jwks_url is not None:
            self.jwks = JWKSCache(
                config.jwks_url,
                allowed_algorithms=self._algorithms,
                max_age=config.jwks_max_age,
                min_refresh_interval=config.jwks_min_refresh_interval,
                timeout=config.jwks_timeout,
                client=http_client,
                clock=monotonic,
            )

    async def verify(self, token: str) -> dict[str, Any]:
        """The verified claims, or :class:`AuthenticationFailed` with the reason."""
        return dict((await self.verified(token)).claims)

    async def verified(self, token: str) -> VerifiedToken:
        """Like :meth:`verify`, returning the remembered token (read-only claims) for callers that
        keep what they derive from it on :attr:`VerifiedToken.principal`."""
        known = self._verified.get(token)
        if known is not None:
            if self.still_holds(known):
                return known
            del self._verified[token]
        if len(token) > self.config.max_token_bytes or not looks_like_jwt(token):
            raise AuthenticationFailed("invalid_token")
        try:
            header = jwt.get_unverified_header(token)
        except PyJWTError:
            raise AuthenticationFailed("invalid_token") from None
        alg = header.get("alg")
        kid = header.get("kid")
        if not isinstance(alg, str) or alg not in self._algorithms or not (kid is None or isinstance(kid, str)):
            raise AuthenticationFailed("invalid_token")
        if "crit" in header or "b64" in header:
            raise AuthenticationFailed("invalid_token")  # RFC 7515 §4.1.11: no extension is understood here
        candidates = await self._candidates(kid)
        if not candidates:
            raise AuthenticationFailed("unknown_key")
        usable = [key for key in candidates if key.algorithm == alg][:MAX_CANDIDATE_KEYS]
        if not usable:
            raise AuthenticationFailed("invalid_token")  # e.g. HS256 presented for an RSA key
        claims, key = self._decode(token, usable)
        self._check_times(claims)
        entry = VerifiedToken(claims, key, static=any(key is static for static in self._static))
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            del self._verified[next(iter(self._verified))]  # the oldest
        self._verified[token] = entry
        return entry

    def still_holds(self, known: VerifiedToken) -> bool:
        """Whether a token this verifier verified is still good as it stands: ``True`` while its
        key is trusted and its dates hold (raises ``expired``/``not_yet_valid`` at this moment's
        clock), ``False`` when its key no longer vouches for it (verify it again)."""
        if not self._still_trusted(known):
            return False
        now, leeway = self._clock(), self.config.leeway  # as _check_times, on the kept dates
        if now - leeway >= known.exp:
            raise AuthenticationFailed("expired")
        if known.nbf is not None and known.nbf > now + leeway:
            raise AuthenticationFailed("not_yet_valid")
        return True

    def _still_trusted(self, entry: VerifiedToken) -> bool:
        if entry.static:
            return True
        jwks = self.jwks
        return jwks is not None and jwks.fresh and entry.key in jwks.keys

    async def _candidates(self, kid: str | None) -> Sequence[VerificationKey]:
        if kid is None:
            if self.jwks is None:
                return self._static
            try:
                remote = await self.jwks.keys_for(None)
            except DependencyUnavailable:
                if not self._static:
                    raise
                remote = ()
            return [*self._static, *remote]
        named = [key for key in self._static if key.kid == kid]
        if named:
            return named
        if self.jwks is not None:
            remote = await self.jwks.keys_for(kid)
            if remote:
                return remote
        return [key for key in self._static if key.kid is None]

    def _decode(self, token: str, keys: Sequence[VerificationKey]) -> tuple[dict[str, Any], VerificationKey]:
        issuer = self.config.issuer
        for key in keys:
            try:
                claims = jwt.decode(
                    token,
                    key.key,
                    algorithms=[key.algorithm],
                    audience=self._audience,
                    issuer=issuer,
                    options={
                        "verify_exp": False,  # checked below against the injected clock
                        "verify_nbf": False,
                        "verify_iat": False,
                        "verify_aud": self._audience is not None,
                        "verify_iss": issuer is not None,
                        "enforce_minimum_key_length": True,
                    },
                )
            except InvalidSignatureError:
                continue
            except PyJWTError as exc:
                raise AuthenticationFailed(_reason(exc)) from None
            return claims, key
        raise AuthenticationFailed("bad_signature")

    def _check_times(self, claims: Mapping[str, Any]) -> None:
        now = self._clock()
        leeway = self.config.leeway
        exp = claims.get("exp")
        if exp is None or not _is_time(exp):
            raise AuthenticationFailed("invalid_token")
        if now - leeway >= exp:
            raise AuthenticationFailed("expired")
        nbf = claims.get("nbf")
        if nbf is not None:
            if not _is_time(nbf):
                raise AuthenticationFailed("invalid_token")
            if nbf > now + leeway:
                raise AuthenticationFailed("not_yet_valid")


def _is_time(value: Any) -> bool:
    """A NumericDate: an int or a finite float (Python's JSON parser accepts NaN and Infinity)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def _reason(exc: PyJWTError) -> Reason:
    if isinstance(exc, InvalidAudienceError):
        return "wrong_audience"
    if isinstance(exc, InvalidIssuerError):
        return "wrong_issuer"
    if isinstance(exc, MissingRequiredClaimError):
        if exc.claim == "aud":
            return "wrong_audience"
        if exc.claim == "iss":
            return "wrong_issuer"
    return "invalid_token"


def _static_key(kid: str | None, secret: SecretStr | None, pem: str | None) -> VerificationKey:
    if pem is not None:
        algorithm, public_key = load_pem_public_key(pem)
        return VerificationKey(kid, algorithm, public_key)
    assert secret is not None  # StaticKey guarantees exactly one of the two
    return VerificationKey(kid, "HS256", secret.get_secret_value().encode())
