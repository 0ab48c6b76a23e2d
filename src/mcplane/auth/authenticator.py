"""One entry point for every transport: request headers (or a stdio token) → Principal.

Credentials, in the order they are looked for:

* ``Authorization: Bearer <token>``: a JWT (three dot-separated segments) when ``jwt`` is
  configured, otherwise (or when the value is not JWT-shaped) an API key if
  ``api_keys_in_bearer`` is on;
* ``X-API-Key: <key>`` (``api_key_header``) when API keys are configured.

* the connection's verified TLS client certificate, when ``client_certificate`` is configured
  (see :mod:`mcplane.auth.certificates`) and the request carries no token or key: a token
  names the caller more precisely than the channel does. ``client_certificate.required``
  refuses a request without a certificate (``missing_certificate``), token or not.

Sending a bearer token and an API key at once is refused (``invalid_token``): one request, one identity. Another
``Authorization`` scheme (``Basic ...``) is refused too rather than ignored. With no credential,
``required: true`` answers ``missing_token``; ``required: false`` yields the anonymous principal.
A credential that is present is always checked: an invalid token never degrades to anonymous.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping

import httpx
import jwt

from mcplane.auth.api_keys import APIKeyVerifier
from mcplane.auth.certificates import CertificateAuthenticator
from mcplane.auth.claims import principal_from_claims
from mcplane.auth.config import AuthConfig, JWTConfig
from mcplane.auth.errors import AuthenticationFailed
from mcplane.auth.tokens import VERIFIED_CACHE_SIZE, JWTVerifier, VerifiedToken, looks_like_jwt
from mcplane.context import ANONYMOUS, Principal

__all__ = ["Authenticator", "principal_from_env"]

REMEMBERED_HEADERS = VERIFIED_CACHE_SIZE
"""``Authorization`` header values whose bearer JWT verified, remembered per :class:`Authenticator`."""


class Authenticator:
    def __init__(
        self,
        config: AuthConfig,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        http_client: httpx.AsyncClient | None = None,
        issued: JWTConfig | None = None,
    ) -> None:
        """``clock`` (wall time) checks ``exp``/``nbf``; ``monotonic`` paces JWKS refreshes;
        ``http_client`` fetches the JWKS (a fresh client per fetch when omitted); ``issued``: the
        keys, issuer and audience of the tokens this server issues itself (the ``oauth`` section)."""
        self.config = config
        self.issued: JWTVerifier | None = None
        if issued is not None:
            self.issued = JWTVerifier(issued, audience=issued.audience, clock=clock, monotonic=monotonic)
        self.jwt: JWTVerifier | None = None
        if config.jwt is not None:
            self.jwt = JWTVerifier(
                config.jwt, audience=config.jwt_audience, clock=clock, monotonic=monotonic, http_client=http_client
            )
        self.api_keys = APIKeyVerifier(config.api_keys)
        self.certificates: CertificateAuthenticator | None = None
        if config.client_certificate is not None:
            self.certificates = CertificateAuthenticator(config.client_certificate)
        self._headers: dict[bytes, tuple[JWTVerifier, VerifiedToken]] = {}

    async def authenticate(self, headers: Mapping[str, str], *, certificate: str | None = None) -> Principal:
        """The caller's principal, or :class:`~mcplane.auth.errors.AuthenticationFailed`.

        Header names are matched case-insensitively. ``certificate``: the connection's verified
        TLS client certificate (PEM), used when ``client_certificate`` is configured. May raise
        :class:`~mcplane.errors.DependencyUnavailable` when the JWKS cannot be fetched.
        """
        lowered = {name.lower(): value for name, value in headers.items()}
        authorization = lowered.get("authorization")
        header = self.config.api_key_header
        api_key = lowered.get(header.lower()) if header and len(self.api_keys) else None
        if authorization is not None and api_key is not None:
            raise AuthenticationFailed("invalid_token")
        certificates = self.certificates
        if certificates is not None:
            if certificate is None:
                if certificates.config.required:
                    raise AuthenticationFailed("missing_certificate")
            elif authorization is None and api_key is None:
                return certificates.principal(certificate)
        if api_key is not None:
            return self.api_keys.verify(api_key.strip())
        if authorization is None:
            if self.config.required:
                raise AuthenticationFailed("missing_token")
            return ANONYMOUS
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise AuthenticationFailed("invalid_token")
        return await self.verify_bearer(value.strip())

    async def verify_bearer(self, token: str) -> Principal:
        """A bearer value (a JWT, or an API key when allowed) → principal."""
        verifier = self._jwt_verifier(token)
        if verifier is not None:
            return (await self._verified_jwt(verifier, token)).principal
        if self.config.api_keys_in_bearer and len(self.api_keys) > 0:
            return self.api_keys.verify(token)
        raise AuthenticationFailed("invalid_token")

    async def authenticate_bearer_header(self, authorization: bytes) -> Principal:
        """What :meth:`authenticate` makes of a request whose one credential is this (raw)
        ``Authorization`` header value, when no client certificate is configured.

        A value whose bearer JWT verified is remembered (at most :data:`REMEMBERED_HEADERS`, the
        oldest dropped first): the same bytes again skip the parsing and go straight to the
        token's checks of the moment (its key still trusted, ``exp``/``nbf`` against the clock).
        """
        known = self._headers.get(authorization)
        if known is not None:
            verifier, verified = known
            if verifier.still_holds(verified):  # raises expired / not_yet_valid, as verify would
                return verified.principal
            del self._headers[authorization]  # the key no longer vouches for it: all the way again
        value = authorization.decode("latin-1")
        if self.certificates is not None:  # not this method's case: decided as a request without a certificate
            return await self.authenticate({"authorization": value})
        scheme, _, token = value.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationFailed("invalid_token")
        token = token.strip()
        verifier = self._jwt_verifier(token)
        if verifier is None:
            return await self.verify_bearer(token)
        verified = await self._verified_jwt(verifier, token)
        if len(self._headers) >= REMEMBERED_HEADERS:
            del self._headers[next(iter(self._headers))]  # the oldest
        self._headers[authorization] = (verifier, verified)
        return verified.principal

    def _jwt_verifier(self, token: str) -> JWTVerifier | None:
        """The verifier :meth:`verify_bearer` hands ``token`` to (``None``: an API key or nothing)."""
        use_api_key = self.config.api_keys_in_bearer and len(self.api_keys) > 0
        verifier = self.jwt
        if (
            self.issued is not None
            and looks_like_jwt(token)
            and (verifier is None or _issuer_of(token) == self.issued.config.issuer)
        ):
            verifier = self.issued  # the routing peek decides nothing: the verifier checks everything
        if verifier is not None and (looks_like_jwt(token) or not use_api_key):
            return verifier
        return None

    @staticmethod
    async def _verified_jwt(verifier: JWTVerifier, token: str) -> VerifiedToken:
        verified = await verifier.verified(token)
        if verified.principal is None:  # first sight of this token: the claims are checked and mapped once
            verified.principal = principal_from_claims(verified.claims, verifier.config.claims)
        return verified


def _issuer_of(token: str) -> str | None:
    """The unverified ``iss`` of a JWT-shaped token (only to pick the verifier), else ``None``."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    issuer = claims.get("iss")
    return issuer if isinstance(issuer, str) else None


async def principal_from_env(
    config: AuthConfig,
    authenticator: Authenticator | None = None,
    environ: Mapping[str, str] | None = None,
) -> Principal:
    """The principal of a stdio session.

    A token in ``config.stdio.token_env`` (default ``MCPLANE_TOKEN``) is verified exactly like an
    HTTP bearer credential; without one, the configured ``stdio.principal``; without that, the
    anonymous principal when ``required`` is false, else ``missing_token``.
    """
    environ = os.environ if environ is None else environ
    name = config.stdio.token_env
    token = environ.get(name, "").strip() if name else ""
    if token:
        return await (authenticator or Authenticator(config)).verify_bearer(token)
    local = config.stdio.principal
    if local is not None:
        return Principal(
            subject=local.subject,
            roles=frozenset(local.roles),
            scopes=frozenset(local.scopes),
            tenant=local.tenant,
            claims={"auth_method": "local"},
        )
    if config.required:
        raise AuthenticationFailed("missing_token")
    return ANONYMOUS
