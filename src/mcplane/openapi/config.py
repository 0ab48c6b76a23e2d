"""The ``openapi:`` section of an upstream in ``gateway.yaml`` (see ``docs/openapi.md``).

::

    upstreams:
      billing:
        openapi:
          spec: specs/billing.yaml               # a file (relative to the working directory) or an http(s) URL
          base_url: https://billing.internal/v1  # or base_urls: [...] (replicas); unset: the spec's first server
          auth: {bearer: "${env:BILLING_TOKEN}"} # or api_key, basic, oauth2 (client credentials)
          include: {tags: [invoices]}            # tags, paths (globs), operations (globs), methods
          exclude: {methods: [DELETE]}
          operations:                            # per operation (operationId, or "GET /path"): overrides
            getInvoice: {name: get_invoice, fixed: {tenant: acme}}
          health_check: /health                  # a path to GET (unset: no probe, the breaker decides)
        timeout: 10s                             # every other upstream key applies as usual
        retries: {attempts: 3}

The spec is read, validated and turned into tools when the file is loaded: a bad spec is one
``ConfigError`` naming the key path and the JSON pointer in the spec.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from mcplane.configfile import field_duration
from mcplane.secrets import Secret

__all__ = [
    "ApiKeyAuth",
    "AuthConfig",
    "BasicAuth",
    "OAuth2ClientCredentials",
    "OpenAPIConfig",
    "OperationFilter",
    "OperationOverride",
]

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def _duration(value: Any) -> float | None:
    return field_duration(value)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class ApiKeyAuth(_Section):
    """An API key sent in a header, the query string or a cookie: ``{header: X-Api-Key, value: ...}``."""

    header: str | None = None
    query: str | None = None
    cookie: str | None = None
    value: Secret

    @model_validator(mode="after")
    def _one_place(self) -> ApiKeyAuth:
        if sum(p is not None and p != "" for p in (self.header, self.query, self.cookie)) != 1:
            raise ValueError("api_key: name it in exactly one of header, query, cookie")
        return self

    @property
    def where(self) -> tuple[Literal["header", "query", "cookie"], str]:
        if self.header:
            return "header", self.header
        if self.query:
            return "query", self.query
        assert self.cookie
        return "cookie", self.cookie


class BasicAuth(_Section):
    username: Secret
    password: Secret


class OAuth2ClientCredentials(_Section):
    """OAuth 2.0 client credentials (RFC 6749 section 4.4): a token fetched, cached until shortly
    before it expires, and fetched again (at once after the API answers 401)."""

    token_url: str
    client_id: Secret
    client_secret: Secret
    scopes: list[str] = Field(default_factory=list)
    audience: str | None = None
    client_auth: Literal["basic", "body"] = "basic"
    """How the client authenticates to the token endpoint: HTTP Basic, or in the form body."""
    refresh_before: float = 30.0
    """Seconds before expiry at which a cached token is replaced."""

    _d = field_validator("refresh_before", mode="before")(_duration)

    @field_validator("token_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("expected an http(s):// URL")
        return value


class AuthConfig(_Section):
    """How mcplane authenticates to the API: at most one of these."""

    bearer: Secret | None = None
    api_key: ApiKeyAuth | None = None
    basic: BasicAuth | None = None
    oauth2: OAuth2ClientCredentials | None = None

    @model_validator(mode="after")
    def _one(self) -> AuthConfig:
        given = [k for k in ("bearer", "api_key", "basic", "oauth2") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"auth: one of bearer, api_key, basic, oauth2 (got {', '.join(given)})")
        return self


class OperationFilter(_Section):
    """Which operations a rule matches: every criterion given must match (any entry of its list)."""

    tags: list[str] = Field(default_factory=list)
    paths: list[str] = Field(default_factory=list)
    """Globs over the path template (``/invoices/*``)."""
    operations: list[str] = Field(default_factory=list)
    """Globs over the operationId (or the tool name when the operation has none)."""
    methods: list[str] = Field(default_factory=list)

    @field_validator("methods")
    @classmethod
    def _methods(cls, value: list[str]) -> list[str]:
        lowered = [m.lower() for m in value]
        for method in lowered:
            if method not in METHODS:
                raise ValueError(f"unknown HTTP method {method.upper()!r}")
        return lowered

    @property
    def empty(self) -> bool:
        return not (self.tags or self.paths or self.operations or self.methods)


class OperationOverride(_Section):
    """What the file changes of one operation's tool."""

    name: str | None = None
    description: str | None = None
    fixed: dict[str, Any] = Field(default_factory=dict)
    """Arguments hidden from the tool and always sent with these values."""
    annotations: dict[str, Any] = Field(default_factory=dict)
    """``readOnlyHint``, ``idempotentHint``, ``destructiveHint``, ``openWorldHint``, ``title``:
    replace what the method implies (retries follow them)."""
    exclude: bool = False


class OpenAPIConfig(_Section):
    spec: str = Field(min_length=1)
    """The OpenAPI 3.0/3.1 or Swagger 2.0 document: a file path or an http(s):// URL (JSON or YAML)."""
    base_url: str | None = None
    base_urls: list[str] = Field(default_factory=list)
    """Several base URLs are replicas of one API (balanced, each with its breaker)."""
    auth: AuthConfig = AuthConfig()
    include: OperationFilter = OperationFilter()
    exclude: OperationFilter = OperationFilter()
    operations: dict[str, OperationOverride] = Field(default_factory=dict)
    """Keyed by operationId, or by ``"METHOD /path"``."""
    headers: dict[str, Secret] = Field(default_factory=dict)
    """Sent with every request to the API."""
    health_check: str | None = None
    """A path to GET as the replica's health probe (every ``health_check.interval``); unset: none."""
    deadline_header: str | None = "Mcplane-Timeout-Ms"
    """Carries the caller's remaining time in milliseconds (``null``: not sent)."""
    output_schema: bool = True
    """Give each tool the success response's schema as ``outputSchema``."""
    validate_spec: bool | Literal["full"] = True
    """Check the document against the OpenAPI JSON Schema of its version before building tools;
    ``full``: also ``openapi-spec-validator``'s semantic checks (slow on large documents); ``false``: neither."""
    max_spec_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    max_depth: int = Field(default=64, ge=4, le=1000)
    """Nesting of the document (and of generated schemas) allowed at most."""
    max_response_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    """An API answer larger than this is refused (``upstream_error``, reason ``response_too_large``)."""
    max_description: int = Field(default=4096, ge=64)
    fetch_timeout: float = 30.0
    """Seconds to fetch a spec given by URL."""

    _d = field_validator("fetch_timeout", mode="before")(_duration)

    _api: Any = PrivateAttr(default=None)

    @field_validator("base_url", "spec", mode="before")
    @classmethod
    def _reveal(cls, value: Any) -> Any:
        return value.get() if isinstance(value, Secret) else value

    @field_validator("base_urls", mode="before")
    @classmethod
    def _reveal_all(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [v.get() if isinstance(v, Secret) else v for v in value]  # pyright: ignore[reportUnknownVariableType]
        return value

    @field_validator("base_url", "base_urls")
    @classmethod
    def _http(cls, value: Any) -> Any:
        for url in [value] if isinstance(value, str) else value or []:
            if not str(url).startswith(("http://", "https://")):
                raise ValueError(f"expected an http(s):// URL, got {url!r}")
        return value

    @field_validator("health_check")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError("expected a path starting with '/'")
        return value

    @model_validator(mode="after")
    def _load(self) -> OpenAPIConfig:
        if self.base_url is not None and self.base_urls:
            raise ValueError("base_url and base_urls: give one of them")
        from mcplane.openapi.operations import compile_api

        self._api = compile_api(self)  # raises SpecError (a ValueError) with the JSON pointer
        return self

    @property
    def fingerprint(self) -> str:
        """A digest of the document read: a reload restarts the upstream when it changed."""
        return str(self._api.digest)

    @property
    def api(self) -> Any:
        """The compiled API (:class:`mcplane.openapi.operations.API`)."""
        return self._api
