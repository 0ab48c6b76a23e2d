"""The ``oauth`` section: mcplane as the authorization server its MCP clients log in through.

.. code-block:: yaml

    auth:
      resource: https://mcp.example.com/mcp        # the canonical URI tokens are bound to
    oauth:
      issuer: https://mcp.example.com
      signing_keys:                                # ES256 (P-256) private keys, PEM
        - {kid: "2026-12", private_key: "${file:keys/oauth-2026-12.pem}", status: active}
        - {kid: "2026-09", private_key: "${file:keys/oauth-2026-09.pem}"}     # still published
      state_keys: ["${env:MCPLANE_OAUTH_STATE_KEY}"]   # newest first: AES-GCM for stored state
      login:
        preset: google
        client_id: "${env:GOOGLE_CLIENT_ID}"
        client_secret: "${env:GOOGLE_CLIENT_SECRET}"

Durations take seconds or a string such as ``"5m"``. Unknown keys are errors.
"""

from __future__ import annotations

from typing import Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mcplane.configfile import field_duration
from mcplane.oauth.login import UpstreamLoginConfig
from mcplane.secrets import Secret

__all__ = ["MetadataDocuments", "OAuthServerConfig", "Registration", "SigningKey"]

MIN_STATE_KEY_BYTES = 32


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SigningKey(_Model):
    """One ES256 signing key. Exactly one is ``active`` (it signs); ``published`` keys are in the
    JWKS and still verify (the previous key after a rotation, or the next one before it);
    ``retired`` keys are neither."""

    kid: str = Field(min_length=1, max_length=64)
    private_key: Secret
    """A PEM EC P-256 private key (``openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256``)."""
    status: Literal["active", "published", "retired"] = "published"

    @field_validator("private_key")
    @classmethod
    def _p256(cls, key: Secret) -> Secret:
        from mcplane.oauth.signing import load_private_key

        load_private_key(key.get())  # raises ValueError without echoing the key
        return key


class Registration(_Model):
    """How clients make themselves known."""

    client_id_metadata_documents: bool = True
    """Accept an ``https://`` client id naming its Client ID Metadata Document."""
    dynamic: bool = True
    """Accept RFC 7591 dynamic client registration (``POST /oauth/register``)."""
    client_ttl: float = Field(default=90 * 86_400.0, gt=0)
    """How long a dynamically registered client is kept."""
    max_redirect_uris: int = Field(default=8, gt=0, le=64)
    max_per_minute: int | None = Field(default=60, gt=0)
    """Dynamic registrations accepted per minute, all replicas together (``null``: no limit); more
    answer 429: an open registration endpoint must not let anyone fill the state backend."""

    @field_validator("client_ttl", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float | None:
        return field_duration(value)


class MetadataDocuments(_Model):
    """Fetching Client ID Metadata Documents (each one from an address checked to be public)."""

    timeout: float = Field(default=5.0, gt=0)
    max_bytes: int = Field(default=65_536, gt=0, le=1_048_576)
    cache_ttl: float = Field(default=3600.0, ge=0)
    allow_loopback_for_tests_only: bool = False
    """TESTS ONLY: also fetch from loopback addresses and over plain http. Never in production."""

    @field_validator("timeout", "cache_ttl", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float | None:
        return field_duration(value)


class OAuthServerConfig(_Model):
    issuer: str
    """This authorization server's issuer identifier: an https URL (http only for loopback),
    no query or fragment. Its endpoints are served under ``/oauth/`` on the same host."""
    signing_keys: list[SigningKey] = Field(default_factory=list)
    """Empty: one key generated per process (a single replica only; tokens die with it)."""
    state_keys: list[Secret] = Field(default_factory=list)
    """Secrets of at least 32 bytes, newest first: the first encrypts stored state, all decrypt.
    Empty: a random key per process (memory state only)."""
    login: UpstreamLoginConfig
    """The identity provider the user's login is delegated to."""
    registration: Registration = Field(default_factory=Registration)
    metadata_documents: MetadataDocuments = Field(default_factory=MetadataDocuments)
    access_token_ttl: float = Field(default=300.0, gt=0, le=86_400)
    refresh_token_ttl: float = Field(default=30 * 86_400.0, gt=0)
    code_ttl: float = Field(default=60.0, gt=0, le=600)
    authorization_ttl: float = Field(default=600.0, gt=0, le=3600)
    """How long a user has from ``/oauth/authorize`` to coming back from the identity provider."""
    max_authorizations_per_minute: int | None = Field(default=600, gt=0)
    """Sign-ins started per minute, all replicas together (``null``: no limit); more answer 429.
    Each holds a pending record for ``authorization_ttl``: an unauthenticated flood must not fill
    the state backend."""
    key_prefix: str = Field(default="oauth:", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    """Where its records live in the state backend: the replicas of one authorization server share
    it; two authorization servers sharing one Redis each need their own."""

    @field_validator("access_token_ttl", "refresh_token_ttl", "code_ttl", "authorization_ttl", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float | None:
        return field_duration(value)

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, value: str) -> str:
        parts = urlsplit(value)
        loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
        if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
            raise ValueError("the issuer must be an https URL (http only on a loopback host)")
        if parts.query or parts.fragment or not parts.hostname:
            raise ValueError("the issuer must be a URL with a host and no query or fragment")
        return value.rstrip("/")

    @field_validator("state_keys")
    @classmethod
    def _long_enough(cls, keys: list[Secret]) -> list[Secret]:
        for position, key in enumerate(keys, 1):
            if len(key.get().encode()) < MIN_STATE_KEY_BYTES:
                raise ValueError(f"key #{position} is shorter than {MIN_STATE_KEY_BYTES} bytes")
        return keys

    @model_validator(mode="after")
    def _one_active(self) -> Self:
        if self.signing_keys:
            active = [key for key in self.signing_keys if key.status == "active"]
            if len(active) != 1:
                raise ValueError("exactly one signing key must have status: active")
            kids = [key.kid for key in self.signing_keys]
            if len(set(kids)) != len(kids):
                raise ValueError("signing key kids must be unique")
        return self

    def endpoint(self, name: str) -> str:
        """The URL of one endpoint (``authorize``, ``token``, ...)."""
        return f"{self.issuer}{ENDPOINTS[name]}"


ENDPOINTS = {
    "authorize": "/oauth/authorize",
    "consent": "/oauth/consent",
    "callback": "/oauth/callback",
    "token": "/oauth/token",
    "revoke": "/oauth/revoke",
    "register": "/oauth/register",
    "jwks": "/oauth/jwks",
}
"""Paths of the endpoints, below the issuer's origin."""
