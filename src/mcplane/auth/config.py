"""The ``auth`` section of the configuration: who may connect, and how they prove it.

.. code-block:: yaml

    auth:
      required: true
      resource: https://mcp.example.com/mcp          # this server, as OAuth clients name it
      authorization_servers: [https://login.example.com]
      scopes_supported: [tools.read, tools.write]
      jwt:
        issuer: https://login.example.com
        audience: https://mcp.example.com/mcp        # defaults to `resource`
        jwks_url: https://login.example.com/.well-known/jwks.json
        keys:                                        # static keys, alongside or instead of JWKS
          - {kid: ci, secret: "${CI_JWT_SECRET}"}     # HS256
          - {kid: legacy, pem: "-----BEGIN PUBLIC KEY-----..."}   # RS256 or ES256
        leeway: 30s
        claims: {roles: roles, tenant: tenant}
      api_keys:
        - {id: ci-bot, hash: "sha256:9f86d0...", subject: ci-bot, roles: [deployer], scopes: [tools.write]}
      stdio:
        token_env: MCPLANE_TOKEN
        principal: {subject: local-dev, roles: [admin]}
      client_certificate:                            # mTLS: the verified client certificate
        required: false
        principal_from: subject_cn                   # or san_dns, san_uri, san_email
        roles: {agent-1: [deployer]}

Durations take seconds or a string such as ``"30s"`` or ``"5m"``. Unknown fields are errors so a
misspelt option never silently turns a check off.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, field_validator, model_validator

from mcplane.auth.keys import load_pem_public_key
from mcplane.errors import ConfigError
from mcplane.policy import parse_duration
from mcplane.secrets import Secret

__all__ = [
    "APIKey",
    "AuthConfig",
    "ClaimsMapping",
    "ClientCertificateAuth",
    "JWTConfig",
    "LocalPrincipal",
    "StaticKey",
    "StdioAuth",
]

JWTAlgorithm = Literal["HS256", "RS256", "ES256"]
_HEX_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_ZERO = re.compile(r"^\s*0+(?:\.0+)?\s*(?:ms|s|m|h)?\s*$")
_MIN_HS256_SECRET_BYTES = 32  # RFC 7518 §3.2: a key at least as long as the hash output


def _seconds(value: Any) -> Any:
    """``30``, ``"30s"``, ``"250ms"``, ``"5m"``; zero is allowed (``"0s"``: no leeway)."""
    if isinstance(value, str):
        if _ZERO.match(value):
            return 0.0
        try:
            return parse_duration(value)
        except ConfigError as exc:
            raise ValueError(exc.message) from None
    return value


Seconds = Annotated[float, BeforeValidator(_seconds), Field(ge=0)]


def _reveal(value: Any) -> Any:
    if isinstance(value, Secret):
        return value.get()
    if isinstance(value, list):
        return [_reveal(item) for item in value]  # pyright: ignore[reportUnknownVariableType]
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _take_resolved_secrets(cls, data: Any) -> Any:
        """A secret reference (``${env:JWT_SECRET}``) arrives from the config loader as a
        :class:`~mcplane.secrets.Secret`; these fields take its text (``SecretStr`` keeps it hidden)."""
        if isinstance(data, dict):
            return {key: _reveal(item) for key, item in data.items()}  # pyright: ignore[reportUnknownVariableType]
        return data


class ClaimsMapping(_Model):
    """Which claims make the principal. A name is looked up as is, then as a dotted path
    (``realm_access.roles``), so namespaced claims such as ``https://example.com/roles`` work."""

    subject: str = "sub"
    roles: str = "roles"
    tenant: str = "tenant"
    roles_string: Literal["one", "split"] = "one"
    """A roles claim given as a string: ``one`` role (the default: a value such as ``"user admin"``
    is one odd role, never ``admin``), or ``split`` on spaces for an issuer that writes roles that
    way. A list is always a list of roles. (``scope`` is always space-separated, per RFC 9068;
    ``scp`` is a list or a space-separated string, as Entra writes it.)"""


class StaticKey(_Model):
    """One verification key: an HS256 ``secret`` or a ``pem`` public key (RSA → RS256, EC P-256 → ES256).

    Each key verifies exactly the one algorithm its type implies, so an RSA public key can never
    be used as an HMAC secret (algorithm confusion).
    """

    kid: str | None = None
    secret: SecretStr | None = None
    pem: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        if (self.secret is None) == (self.pem is None):
            raise ValueError("a key needs exactly one of `secret` (HS256) or `pem` (RS256/ES256)")
        if self.secret is not None and len(self.secret.get_secret_value().encode()) < _MIN_HS256_SECRET_BYTES:
            raise ValueError(f"an HS256 secret must be at least {_MIN_HS256_SECRET_BYTES} bytes")
        if self.pem is not None:
            load_pem_public_key(self.pem)  # raises ValueError with a clear message
        return self


class JWTConfig(_Model):
    issuer: str | list[str] | None = None
    """Accepted ``iss`` value(s); ``None`` skips the issuer check (not recommended)."""
    audience: str | list[str] | None = None
    """Accepted ``aud`` value(s); defaults to :attr:`AuthConfig.resource`."""
    verify_audience: bool = True
    """Turn the audience check off only for issuers that cannot set ``aud``."""
    algorithms: list[JWTAlgorithm] = Field(default_factory=lambda: ["HS256", "RS256", "ES256"])
    keys: list[StaticKey] = Field(default_factory=list)
    jwks_url: str | None = None
    jwks_max_age: Seconds = 3600.0
    """Refetch the key set this often even when no unknown ``kid`` forces it."""
    jwks_min_refresh_interval: Seconds = 10.0
    """At most one fetch per interval, however many unknown ``kid`` values arrive."""
    jwks_timeout: Seconds = 5.0
    leeway: Seconds = 30.0
    """Clock skew tolerated on ``exp`` and ``nbf``."""
    max_token_bytes: int = Field(default=8192, gt=0)
    claims: ClaimsMapping = Field(default_factory=ClaimsMapping)

    @field_validator("jwks_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError("jwks_url must be an http(s) URL")
        return value

    @model_validator(mode="after")
    def _has_keys(self) -> Self:
        if not self.keys and self.jwks_url is None:
            raise ValueError("jwt needs `keys`, a `jwks_url`, or both")
        if not self.algorithms:
            raise ValueError("jwt.algorithms must not be empty")
        return self


class APIKey(_Model):
    """An API key, stored only as its SHA-256 digest (see :mod:`mcplane.auth.api_keys` for why)."""

    id: str | None = None
    """A name for logs and audit (never the key itself); defaults to the digest's first 12 hex digits."""
    hash: str
    """``sha256:<64 hex digits>`` or the bare hex digest; make one with ``mcplane.auth.hash_api_key``."""
    subject: str
    roles: list[str] = Field(default_factory=list)
    scopes: list[str] = Field(default_factory=list)
    tenant: str | None = None

    @field_validator("hash")
    @classmethod
    def _digest(cls, value: str) -> str:
        digest = value.strip().lower().removeprefix("sha256:")
        if not _HEX_DIGEST.match(digest):
            raise ValueError("an API key hash must be 'sha256:' followed by 64 hex digits")
        return digest

    @property
    def key_id(self) -> str:
        return self.id or self.hash[:12]


class LocalPrincipal(_Model):
    subject: str
    roles: list[str] = Field(default_factory=list)
    scopes: list[str] = Field(default_factory=list)
    tenant: str | None = None


class StdioAuth(_Model):
    """Who a stdio session is: the token in ``token_env`` (checked like an HTTP credential) or else
    the configured local ``principal``."""

    token_env: str | None = "MCPLANE_TOKEN"
    principal: LocalPrincipal | None = None


class ClientCertificateAuth(_Model):
    """The verified TLS client certificate as a credential (mTLS; see :mod:`mcplane.auth.certificates`)."""

    required: bool = False
    """Refuse requests whose connection presented no verified client certificate, even with a token."""
    principal_from: Literal["subject_cn", "san_dns", "san_uri", "san_email"] = "subject_cn"
    """Which name of the certificate is the principal's subject (the first SAN of that kind)."""
    roles: dict[str, list[str]] = Field(default_factory=dict)
    """Subject → roles; the key ``"*"`` gives its roles to every certificate."""
    scopes: dict[str, list[str]] = Field(default_factory=dict)
    """Subject → scopes, likewise."""


class AuthConfig(_Model):
    required: bool = True
    """Refuse requests without a credential. When false, they run as the anonymous principal
    (a credential that is present must still be valid)."""
    jwt: JWTConfig | None = None
    api_keys: list[APIKey] = Field(default_factory=list)
    api_key_header: str | None = "x-api-key"
    """Header carrying an API key; ``None`` turns the header off."""
    api_keys_in_bearer: bool = True
    """Also accept an API key as ``Authorization: Bearer <key>`` (a value that is not a JWT)."""
    resource: str | None = None
    """This server's canonical URL (RFC 8707/9728), e.g. ``https://mcp.example.com/mcp``."""
    authorization_servers: list[str] = Field(default_factory=list)
    scopes_supported: list[str] = Field(default_factory=list)
    stdio: StdioAuth = Field(default_factory=StdioAuth)
    client_certificate: ClientCertificateAuth | None = None
    """Accept the connection's verified TLS client certificate as the credential (mTLS)."""
    oauth_server: bool = False
    """Set by the ``oauth`` section (never by hand): accept the access tokens this server issues."""

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        configured = self.jwt is not None or self.api_keys or self.stdio.principal is not None or self.oauth_server
        if self.required and not configured and self.client_certificate is None:
            raise ValueError(
                "auth.required is true but no jwt, api_keys, client_certificate or stdio.principal is configured"
            )
        jwt = self.jwt
        if jwt is not None and jwt.verify_audience and jwt.audience is None and self.resource is None:
            raise ValueError("set auth.jwt.audience or auth.resource (or jwt.verify_audience: false)")
        if self.resource is not None and not self.resource.startswith(("https://", "http://")):
            raise ValueError("auth.resource must be an http(s) URL")
        ids = [key.key_id for key in self.api_keys]
        if len(set(ids)) != len(ids):
            raise ValueError("api key ids must be unique")
        digests = [key.hash for key in self.api_keys]
        if len(set(digests)) != len(digests):
            raise ValueError("the same api key hash is configured twice")
        return self

    @property
    def jwt_audience(self) -> str | list[str] | None:
        """The audience tokens must carry: ``jwt.audience``, else ``resource``; ``None`` when unchecked."""
        if self.jwt is None or not self.jwt.verify_audience:
            return None
        return self.jwt.audience if self.jwt.audience is not None else self.resource
