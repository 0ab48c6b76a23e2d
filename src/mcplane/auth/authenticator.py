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
from mcplane.auth.tokens import JWTVerifier, looks_like_jwt
from mcplane.context import ANONYMOUS, Principal

__all__ = ["Authenticator", "principal_from_env"]


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
        use_api_key = self.config.api_keys_in_bearer and len(self.api_keys) > 0
        verifier = self.jwt
        if (
            self.issued is not None
            and looks_like_jwt(token)
            and (verifier is None or _issuer_of(token) == self.issued.config.issuer)
        ):
            verifier = self.issued  # the routing peek decides nothing: the verifier checks everything
        if verifier is not None and (looks_like_jwt(token) or not use_api_key):
            verified = await verifier.verified(token)
            principal = verified.principal
            if principal is None:  # first sight of this token: the claims are checked and mapped once
                principal = verified.principal = principal_from_claims(verified.claims, verifier.config.claims)
            return principal
        if use_api_key:
            return self.api_keys.verify(token)
        raise AuthenticationFailed("invalid_token")


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
