"""Login delegated to an upstream identity provider (OpenID Connect, or GitHub's OAuth).

The authorization server sends the user's browser to the provider (:meth:`UpstreamLogin.begin`),
and when the provider redirects back, turns its answer into a verified identity
(:meth:`UpstreamLogin.complete`). Anything wrong raises :class:`LoginFailed` with a reason that
is safe to show: never a token, a code or a secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import httpx
from pydantic import BaseModel, ConfigDict, Field

from mcplane.errors import Unauthenticated
from mcplane.secrets import Secret

__all__ = [
    "LoginClaims",
    "LoginFailed",
    "LoginIdentity",
    "LoginStart",
    "UpstreamLogin",
    "UpstreamLoginConfig",
    "build_login",
]

Preset = Literal["oidc", "google", "github", "entra", "auth0", "okta", "keycloak"]


class LoginFailed(Unauthenticated):
    """The upstream login did not yield a verified identity; ``message`` is safe to show."""

    default_message = "login failed"


@dataclass(frozen=True, slots=True)
class LoginStart:
    url: str
    """Where to send the user's browser: the provider's authorization endpoint with state,
    PKCE S256 challenge and nonce."""
    saved: Mapping[str, str]
    """What :meth:`UpstreamLogin.complete` needs later (code_verifier, nonce, ...); store it,
    encrypted, with the pending authorization."""


@dataclass(frozen=True, slots=True)
class LoginIdentity:
    subject: str
    """Stable user id (prefixed with ``subject_prefix`` if configured)."""
    claims: Mapping[str, Any]
    """The verified ID token claims (or the user info, for GitHub)."""
    roles: tuple[str, ...]
    scopes: tuple[str, ...]
    tenant: str | None


class UpstreamLogin(Protocol):
    async def begin(self, *, state: str, redirect_uri: str) -> LoginStart: ...

    async def complete(self, *, query: Mapping[str, str], saved: Mapping[str, str], redirect_uri: str) -> LoginIdentity:
        """``query`` is the provider's redirect back (code, state, iss, error...); raises
        :class:`LoginFailed` with a safe reason."""
        ...

    async def aclose(self) -> None: ...


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LoginClaims(_Model):
    """Which provider claims make mcplane's identity. A name is looked up as is, then as a dotted
    path (``realm_access.roles``); a list or a space-separated string gives several values."""

    subject: str = "sub"
    roles: str | None = "roles"
    scopes: str | None = None
    tenant: str | None = None
    email: str = "email"
    groups: str | None = "groups"


class UpstreamLoginConfig(_Model):
    """The ``login:`` key of the authorization server's configuration section."""

    preset: Preset = "oidc"
    issuer: str | None = None
    client_id: Secret
    client_secret: Secret | None = None
    scopes: list[str] = Field(default_factory=lambda: ["openid", "email", "profile"])
    claims: LoginClaims = Field(default_factory=LoginClaims)
    tenant: str | None = None


def build_login(config: UpstreamLoginConfig, *, http: httpx.AsyncClient | None = None) -> UpstreamLogin:
    """The login for ``config``: OpenID Connect for every preset but ``github`` (plain OAuth)."""
    raise NotImplementedError
