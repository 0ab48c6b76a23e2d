"""Login delegated to an upstream identity provider (OpenID Connect, or GitHub's OAuth).

The authorization server sends the user's browser to the provider (:meth:`UpstreamLogin.begin`),
and when the provider redirects back, turns its answer into a verified identity
(:meth:`UpstreamLogin.complete`). Anything wrong raises :class:`LoginFailed` with a reason that
is safe to show: never a token, a code or a secret.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, Self
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mcplane.auth.config import Seconds
from mcplane.errors import Unauthenticated
from mcplane.oauth.presets import apply_preset
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
    """The upstream login did not yield a verified identity. ``reason`` is a stable code and
    ``message`` a sentence, both safe to show (neither ever holds a token, a code or a secret).

    Reasons: ``provider_error`` (the provider redirected back with an error), ``invalid_response``
    (no code, a query too large), ``state_mismatch``, ``issuer_mismatch`` (RFC 9207 ``iss``),
    ``provider_unavailable`` (discovery, keys or token endpoint unreachable, too slow, too large or
    malformed), ``token_refused`` (the token endpoint answered an error), ``invalid_id_token``
    (signature, issuer, audience, expiry, ``azp``, ``at_hash``), ``nonce_mismatch``,
    ``invalid_claims`` (no usable subject, a malformed role), ``not_allowed`` (the allowed-domain or
    allowed-group filter).
    """

    default_message = "login failed"

    def __init__(self, reason: str, message: str | None = None) -> None:
        super().__init__(message or reason.replace("_", " "), details={"reason": reason})
        self.reason = reason

    def __repr__(self) -> str:
        return f"LoginFailed(reason={self.reason!r})"


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
    path (``realm_access.roles``); a list or a space-separated string gives several values.
    ``None`` turns a claim off."""

    subject: str = "sub"
    roles: str | None = "roles"
    scopes: str | None = None
    tenant: str | None = None
    email: str = "email"
    groups: str | None = "groups"


TokenAuthMethod = Literal["client_secret_basic", "client_secret_post", "none"]
_RESERVED_PARAMS = frozenset(
    {"response_type", "client_id", "redirect_uri", "scope", "state", "nonce", "code_challenge", "code_challenge_method"}
)


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (where plain http is allowed, as in RFC 8252)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(value: str, what: str) -> str:
    """An https URL, or http on loopback; ``ValueError`` naming ``what`` otherwise."""
    parts = urlsplit(value)
    if parts.scheme == "https" and parts.hostname:
        return value
    if parts.scheme == "http" and parts.hostname and is_loopback(parts.hostname):
        return value
    raise ValueError(f"{what} must be an https URL (http only on loopback), got {value!r}")


class UpstreamLoginConfig(_Model):
    """The ``login:`` key of the authorization server's configuration section: the identity
    provider users log in with. See docs/oauth-login.md for each preset."""

    preset: Preset = "oidc"
    issuer: str | None = None
    """The OpenID provider's issuer; discovery at ``issuer + /.well-known/openid-configuration``.
    Filled by every preset but ``oidc`` (required) and ``github`` (not OpenID Connect)."""
    client_id: Secret
    client_secret: Secret | None = None
    """``None``: a public client (PKCE only, ``token_endpoint_auth_method: none``)."""
    scopes: list[str] = Field(default_factory=lambda: ["openid", "email", "profile"])
    claims: LoginClaims = Field(default_factory=LoginClaims)
    tenant: str | None = None
    """Entra: the directory (tenant) id; Okta and Auth0: the domain (``dev-123.okta.com``)."""
    authorization_server: str = "default"
    """Okta: the custom authorization server's id (its issuer ends in ``/oauth2/<id>``)."""
    base_url: str | None = None
    """Keycloak: the server's URL; GitHub: the web URL (``https://github.com``, or GitHub Enterprise)."""
    realm: str | None = None
    """Keycloak: the realm."""
    api_url: str | None = None
    """GitHub: the REST API's URL (``https://api.github.com``)."""
    fetch_email: bool = False
    """GitHub: read the verified primary address from ``GET /user/emails`` (needs ``user:email``)."""
    subject_prefix: str = ""
    """Prepended to the provider's subject (``google:``), so users of two providers never collide."""
    role_map: dict[str, list[str]] = Field(default_factory=lambda: {})
    """A provider role or group → mcplane roles it grants, on top of the roles claim."""
    allowed_domains: list[str] = Field(default_factory=lambda: [])
    """When set, only users whose *verified* email is in one of these domains may log in."""
    allowed_groups: list[str] = Field(default_factory=lambda: [])
    """When set, only users with one of these groups or roles (as the provider names them) may log in."""
    token_auth_method: TokenAuthMethod | None = None
    """How mcplane authenticates at the token endpoint; default: ``none`` without a secret, else
    ``client_secret_basic`` unless the provider only advertises ``client_secret_post``."""
    authorize_params: dict[str, str] = Field(default_factory=lambda: {})
    """Extra authorization request parameters (``prompt: select_account``, Google's ``hd``)."""
    leeway: Seconds = 60.0
    """Clock skew tolerated on the ID token's ``exp`` and ``nbf``."""
    timeout: Seconds = 10.0
    """Each call to the provider (discovery, keys, token, user info), all included."""
    discovery_max_age: Seconds = 3600.0
    max_response_bytes: int = Field(default=256 * 1024, gt=0)
    """Largest discovery document, token response or user info accepted."""

    @model_validator(mode="before")
    @classmethod
    def _preset_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return apply_preset(data)  # pyright: ignore[reportUnknownArgumentType]
        return data

    @field_validator("issuer", "base_url", "api_url")
    @classmethod
    def _url(cls, value: str | None, info: Any) -> str | None:
        return None if value is None else check_url(value, info.field_name)

    @field_validator("authorize_params")
    @classmethod
    def _not_reserved(cls, value: dict[str, str]) -> dict[str, str]:
        reserved = sorted(_RESERVED_PARAMS & value.keys())
        if reserved:
            raise ValueError(f"authorize_params cannot set {', '.join(reserved)} (mcplane sets them)")
        return value

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if self.preset != "github" and self.issuer is None:
            raise ValueError("login needs `issuer` (or a preset that fills it)")
        if self.preset != "github" and "openid" not in self.scopes:
            raise ValueError("scopes must include `openid` for an OpenID Connect login")
        if self.token_auth_method not in (None, "none") and self.client_secret is None:
            raise ValueError(f"token_auth_method {self.token_auth_method} needs a client_secret")
        return self


def build_login(
    config: UpstreamLoginConfig,
    *,
    http: httpx.AsyncClient | None = None,
    clock: Callable[[], float] = time.time,
) -> UpstreamLogin:
    """The login for ``config``: OpenID Connect for every preset but ``github`` (plain OAuth).
    ``http`` is used as given (its owner closes it); without one the login makes and closes its own."""
    if config.preset == "github":
        from mcplane.oauth.login_github import GitHubLogin

        return GitHubLogin(config, http=http)
    from mcplane.oauth.login_oidc import OIDCLogin

    return OIDCLogin(config, http=http, clock=clock)
