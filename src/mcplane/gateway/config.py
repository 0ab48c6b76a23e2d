"""``gateway.yaml``: the plane's own sections plus ``upstreams``, validated once, errors with their key path.

::

    server: {name: gateway, default_timeout: 10s}     # every PlaneConfig section applies as usual
    auth: ...                                         # auth, authorization, rate_limit, audit, tools globs
    upstreams:
      everything:                                     # the upstream's name (and default namespace)
        endpoints:                                    # several endpoints are replicas of one server
          - command: npx                              # stdio: spawned and supervised
            args: [-y, "@modelcontextprotocol/server-everything"]
            env: {API_KEY: "${env:API_KEY}"}
          - url: http://10.0.0.5:3001/mcp             # Streamable HTTP (one kept-open session)
          - url: ws://10.0.0.6:8000/mcp               # WebSocket
        headers: {Authorization: "Bearer ${env:EVERYTHING_TOKEN}"}
        mode: auto                                    # auto | legacy | 2026-07-28 (protocol era)
        timeout: 30s                                  # per call (the policy timeout of its tools)
        retries: {attempts: 3, backoff: 100ms, max_backoff: 2s, attempt_timeout: 5s}
        breaker: {failures: 5, cool_down: 10s, window: 30s, error_rate: 0.5, min_calls: 20}
        load_balancing: round_robin                   # or least_in_flight
        health_check: {interval: 15s}
        restart: {initial: 500ms, max: 30s}           # reconnect / respawn backoff
        namespace: everything                         # tools appear as everything__echo (false: as echo)
        retryable: ["get-*"]                          # tool globs retried although not annotated
        depends_on: {"trigger-*": [billing]}          # tool glob -> upstreams that must be healthy
        tls: {ca: "${file:certs/ca.pem}", cert: certs/gateway.pem, key: certs/gateway.key}   # https/wss
        required: true                                # /ready fails while no replica is connected
        identity: none                                # none | forward | principal_header | meta | exchange
      billing:                                        # an API described by OpenAPI (see mcplane.openapi)
        openapi: {spec: specs/billing.yaml, base_url: "https://billing.internal/v1"}
    versions:                                         # one tool served by several versions
      users__fetch_user:                              # the exposed name (see mcplane.gateway.versions)
        versions:
          v1: {upstream: users_v1, tool: fetch_user}
          v2: {upstream: users_v2}                    # tool: the exposed name's last part
        default: v1
        canary: {version: v2, weight: 0.1}
        rollback: {error_rate: 0.2, window: 60s, min_calls: 20}
    reload: {watch: true, interval: 2s, drain: 30s}   # see mcplane.gateway.reload
    shared_state: {enabled: true, sync_interval: 5s}  # breakers shared by replicas (with redis_url)
    integrity:                                        # tool pins and injection scan (mcplane.gateway.integrity)
      mode: first_sight                               # or lock: a tool absent from lock_file is refused
      lock_file: gateway.lock.json                    # written by mcplane gateway lock
      on_change: quarantine                           # or allow (logged and counted, then served)
      scan: {on_finding: flag, max_bytes: 65536, max_depth: 32}
      admin: {roles: [admin], scopes: [], allow_anonymous: false}
    discovery: {mode: search, always_list: ["billing__*"], max_results: 10}   # catalog search (mcplane.gateway.search)

Secret references (``${env:...}``, ``${file:...}``, ``${vault:...}``) are resolved by
:class:`mcplane.secrets.Secrets`; ``MCPLANE__SECTION__KEY`` environment overrides apply as for
``mcplane.yaml``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from mcplane.config import PlaneConfig
from mcplane.configfile import deep_merge, env_overrides, field_duration, read_yaml_file
from mcplane.errors import ConfigError
from mcplane.openapi.config import OpenAPIConfig
from mcplane.secrets import Secret, Secrets

__all__ = [
    "BreakerConfig",
    "DiscoveryConfig",
    "Endpoint",
    "GatewayConfig",
    "HTTPEndpoint",
    "HealthCheckConfig",
    "IdentityConfig",
    "IntegrityConfig",
    "RestartConfig",
    "RetryConfig",
    "SharedStateConfig",
    "StdioEndpoint",
    "UpstreamConfig",
    "UpstreamTLS",
    "VersionedToolConfig",
    "load_gateway_config",
    "parse_gateway_config",
]

SEPARATOR = "__"
"""Between namespace and name. SEP-986 (``mcp.shared.tool_name_validation``) allows only
``[A-Za-z0-9._-]`` in tool names, so ``/`` or ``:`` are out; a single ``_``, ``-`` or ``.`` is
common inside real tool names (``get-sum``, ``list_files``), so a doubled underscore is what keeps
the split unambiguous. Namespaces therefore may not contain ``__``."""

_NAMESPACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*(?:_[A-Za-z0-9.-]+)*$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


def _positive_duration(value: Any) -> float | None:
    return field_duration(value)


class StdioEndpoint(_Section):
    command: str = Field(min_length=1)
    args: list[str] = Field(default_factory=list)
    env: dict[str, Secret] = Field(default_factory=dict)
    cwd: str | None = None

    @field_validator("command", "args", "cwd", mode="before")
    @classmethod
    def _reveal(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [item.get() if isinstance(item, Secret) else item for item in value]  # pyright: ignore[reportUnknownVariableType]
        return value.get() if isinstance(value, Secret) else value

    @property
    def kind(self) -> Literal["stdio"]:
        return "stdio"

    def describe(self) -> str:
        return f"stdio:{Path(self.command).name}"


class HTTPEndpoint(_Section):
    url: str

    @field_validator("url", mode="before")
    @classmethod
    def _reveal(cls, value: Any) -> Any:
        return value.get() if isinstance(value, Secret) else value

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        if not value.startswith(("http://", "https://", "ws://", "wss://")):
            raise ValueError("expected an http(s):// or ws(s):// URL")
        return value

    @property
    def kind(self) -> Literal["http", "ws"]:
        return "ws" if self.url.startswith(("ws://", "wss://")) else "http"

    def describe(self) -> str:
        return re.sub(r"//[^@/]*@", "//", self.url)  # never show userinfo


Endpoint = StdioEndpoint | HTTPEndpoint


class RetryConfig(_Section):
    attempts: int = Field(default=3, ge=1, le=10)
    """Attempts in all (1 = no retry). Only read-only/idempotent or ``retryable`` tools retry."""
    backoff: float = 0.1
    """First wait; doubles each retry up to ``max_backoff``, with full jitter."""
    max_backoff: float = 2.0
    attempt_timeout: float | None = None
    """One attempt's limit (so a retry can still fit in the call's time); unset: the call's."""

    _d = field_validator("backoff", "max_backoff", "attempt_timeout", mode="before")(_positive_duration)


class BreakerConfig(_Section):
    failures: int = Field(default=5, ge=1)
    """Consecutive failures that open the circuit."""
    cool_down: float = 10.0
    """How long the circuit stays open before one probe call is let through (half-open)."""
    window: float = 30.0
    """Sliding window of the error-rate rule."""
    error_rate: float | None = Field(default=None, gt=0, le=1)
    """Also open when at least this share of the window's calls failed (unset: off)."""
    min_calls: int = Field(default=20, ge=1)
    """Calls the window needs before the error-rate rule applies."""

    _d = field_validator("cool_down", "window", mode="before")(_positive_duration)


class HealthCheckConfig(_Section):
    interval: float = 15.0
    """Seconds between probes (a ``tools/list``, which also refreshes the catalog)."""

    _d = field_validator("interval", mode="before")(_positive_duration)


class RestartConfig(_Section):
    initial: float = 0.5
    max: float = 30.0

    _d = field_validator("initial", "max", mode="before")(_positive_duration)


class IdentityConfig(_Section):
    """Whether (and how) the caller's identity travels to the upstream (see :mod:`mcplane.gateway.identity`).

    ``none``: not at all (the upstream sees only the gateway's own ``headers``). ``forward``: the
    caller's ``Authorization`` header, as it came, on each call (HTTP endpoints). ``principal_header``:
    the authenticated principal's subject and roles in ``principal_header``/``roles_header`` (HTTP
    endpoints). ``meta``: the principal in the request's ``_meta`` under ``mcplane/principal`` (any
    transport). ``exchange``: the caller's bearer token exchanged for one meant for this upstream (RFC 8693
    at ``token_url``), sent as ``Authorization`` (HTTP endpoints). Except for stdio, identity travels only
    to ``https://``/``wss://`` or loopback endpoints.
    """

    mode: Literal["none", "forward", "principal_header", "meta", "exchange"] = "none"
    principal_header: str = "X-Mcplane-Principal"
    roles_header: str = "X-Mcplane-Roles"
    # ``exchange`` (RFC 8693, see mcplane.gateway.token_exchange): the caller's token exchanged at token_url.
    token_url: str | None = None
    client_id: Secret | None = None
    client_secret: Secret | None = None
    auth_method: Literal["client_secret_basic", "client_secret_post"] = "client_secret_basic"
    audience: str | None = None
    resource: str | None = None
    scopes: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _exchange(self) -> IdentityConfig:
        from mcplane.gateway.token_exchange import check_exchange

        check_exchange(self)
        return self


class SharedStateConfig(_Section):
    """Breaker state shared by every gateway replica through ``redis_url`` (see :mod:`mcplane.gateway.shared`)."""

    enabled: bool = True
    """With ``redis_url`` set; ``false`` keeps each replica's breakers to itself."""
    sync_interval: float = 5.0
    """Seconds between full reads of the shared state (changes arrive at once by pub/sub)."""

    _d = field_validator("sync_interval", mode="before")(_positive_duration)


class ScanConfig(_Section):
    """The injection scan of tool definitions (see :mod:`mcplane.gateway.injection`)."""

    on_finding: Literal["flag", "block"] = "flag"
    """``flag``: list the tool, log and count what was found; ``block``: withhold it as if quarantined."""
    max_bytes: int = Field(default=65_536, ge=1024)
    """Text scanned per tool at most; a definition with more is reported ``oversized``."""
    max_depth: int = Field(default=32, ge=1, le=1000)
    """Schema nesting walked at most; deeper parts are reported ``oversized``, not walked."""


class IntegrityAdminConfig(_Section):
    """Who may list and approve quarantined tools over HTTP (``/integrity/...``)."""

    roles: list[str] = Field(default_factory=lambda: ["admin"])
    scopes: list[str] = Field(default_factory=list)
    """A principal with any of these roles or scopes may approve."""
    allow_anonymous: bool = False
    """Serve the endpoints without authentication (only behind a network boundary you trust)."""


class IntegrityConfig(_Section):
    """Tool definitions pinned by hash, changes quarantined until approved (see :mod:`mcplane.gateway.integrity`)."""

    enabled: bool = True
    mode: Literal["first_sight", "lock"] = "first_sight"
    """``first_sight``: a tool the lock file does not name is pinned as first seen; ``lock``: it is refused."""
    lock_file: str | None = None
    """The lock file ``mcplane gateway lock`` writes (read only; relative to the working directory)."""
    on_change: Literal["quarantine", "allow"] = "quarantine"
    """A definition that differs from its pin: withheld until approved, or served (logged and counted)."""
    scan: ScanConfig = ScanConfig()
    admin: IntegrityAdminConfig = IntegrityAdminConfig()

    @model_validator(mode="after")
    def _lock_needs_file(self) -> IntegrityConfig:
        if self.mode == "lock" and self.lock_file is None:
            raise ValueError("integrity: mode: lock needs lock_file")
        return self


class UpstreamTLS(_Section):
    """How the gateway checks an ``https://``/``wss://`` upstream, and proves itself to it.

    ``ca``, ``cert`` and ``key`` are each a file path or the PEM text (a ``${file:...}`` or
    ``${vault:...}`` reference gives the text). One TLS context per upstream, built once.
    """

    verify: bool = True
    """Verify the upstream's certificate and name; ``false`` only for local experiments."""
    ca: Secret | None = None
    """Trust only this CA bundle (unset: the system's CAs)."""
    cert: Secret | None = None
    """A client certificate (chain) to present when the upstream asks for one (mTLS)."""
    key: Secret | None = None
    """Its private key (unset: in ``cert``)."""
    server_name: str | None = None
    """The name to verify and send (SNI) instead of the URL's host (an upstream reached by IP)."""

    @model_validator(mode="after")
    def _consistent(self) -> UpstreamTLS:
        if self.key is not None and self.cert is None:
            raise ValueError("key needs cert")
        if not self.verify and (self.ca is not None or self.server_name is not None):
            raise ValueError("ca and server_name verify the upstream: they make no sense with verify: false")
        return self


class UpstreamConfig(_Section):
    openapi: OpenAPIConfig | None = None
    """An API described by OpenAPI instead of an MCP server (see :mod:`mcplane.openapi`): its
    base URLs are the endpoints (replicas), its operations the tools."""
    endpoints: list[Endpoint] = Field(default_factory=list, validate_default=True)
    headers: dict[str, Secret] = Field(default_factory=dict)
    mode: str = "auto"
    timeout: float | None = None
    retries: RetryConfig = RetryConfig()
    breaker: BreakerConfig = BreakerConfig()
    load_balancing: Literal["round_robin", "least_in_flight"] = "round_robin"
    health_check: HealthCheckConfig = HealthCheckConfig()
    restart: RestartConfig = RestartConfig()
    namespace: str | Literal[False] | None = None
    """Names appear as ``<namespace>__<name>`` (unset: the upstream's name is the namespace);
    ``false`` exposes them under the upstream's own names (at most one upstream per gateway)."""
    retryable: list[str] = Field(default_factory=list)
    depends_on: dict[str, list[str]] = Field(default_factory=dict)
    connect_timeout: float = 10.0
    tls: UpstreamTLS | None = None
    """TLS for ``https://``/``wss://`` endpoints (unset: verified against the system's CAs)."""
    required: bool = True
    """``/ready`` fails while none of this upstream's endpoints is connected (``false``: optional)."""
    identity: IdentityConfig = IdentityConfig()
    lean: bool = True
    """Send plain ``tools/call`` requests to Streamable HTTP endpoints on the lean path
    (:mod:`mcplane.gateway.lean`); ``false``: every call through the SDK client."""

    _d = field_validator("timeout", "connect_timeout", mode="before")(_positive_duration)

    @field_validator("endpoints")
    @classmethod
    def _endpoints(cls, value: list[Endpoint], info: ValidationInfo) -> list[Endpoint]:
        openapi = info.data.get("openapi")
        if openapi is not None:
            if value:
                raise ValueError("an openapi upstream's endpoints are its base_url/base_urls; give no endpoints")
            return [HTTPEndpoint(url=url) for url in openapi.api.base_urls]
        if not value and "openapi" in info.data:
            raise ValueError("List should have at least 1 item (or give openapi:)")
        return value

    @field_validator("identity", mode="before")
    @classmethod
    def _identity_shorthand(cls, value: Any) -> Any:
        return {"mode": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _identity_transport(self) -> UpstreamConfig:
        from mcplane.gateway.identity import check_identity

        check_identity(self.identity.mode, self.endpoints, self.headers)
        if self.openapi is not None and self.identity.mode == "meta":
            raise ValueError(
                "identity: meta travels in MCP _meta; an openapi upstream takes forward, principal_header or exchange"
            )
        return self

    @field_validator("mode")
    @classmethod
    def _mode(cls, value: str) -> str:
        from mcp_types.version import MODERN_PROTOCOL_VERSIONS

        if value not in ("auto", "legacy", *MODERN_PROTOCOL_VERSIONS):
            raise ValueError(f"expected auto, legacy or one of {', '.join(MODERN_PROTOCOL_VERSIONS)}")
        return value

    @field_validator("namespace", mode="before")
    @classmethod
    def _namespace_off(cls, value: Any) -> Any:
        if value is True:
            raise ValueError("expected a namespace, or false to expose the upstream's own names")
        return value

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str | Literal[False] | None) -> str | Literal[False] | None:
        if isinstance(value, str) and (SEPARATOR in value or not _NAMESPACE.match(value)):
            raise ValueError(f"expected letters, digits, '.', '-' or single '_' (not {SEPARATOR!r})")
        return value

    @model_validator(mode="after")
    def _headers_need_network(self) -> UpstreamConfig:
        if self.headers and all(isinstance(e, StdioEndpoint) for e in self.endpoints):
            raise ValueError("headers apply to http(s):// and ws(s):// endpoints only")
        if self.tls is not None and not any(e.url.startswith(("https://", "wss://")) for e in self._urls()):
            raise ValueError("tls applies to https:// and wss:// endpoints only")
        return self

    def _urls(self) -> list[HTTPEndpoint]:
        return [e for e in self.endpoints if isinstance(e, HTTPEndpoint)]


# ----------------------------------------------------------------- versions and reload
_TOOL_NAME = re.compile(r"^[A-Za-z0-9._-]{1,128}$")  # SEP-986, as mcp.shared.tool_name_validation
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class VersionTarget(_Section):
    upstream: str
    """The upstream serving this version."""
    tool: str | None = None
    """Its tool name there (not namespaced); unset: the exposed name's part after the last ``__``."""

    @field_validator("tool")
    @classmethod
    def _tool(cls, value: str | None) -> str | None:
        if value is not None and not _TOOL_NAME.match(value):
            raise ValueError("expected a tool name of 1-128 letters, digits, '.', '-' or '_'")
        return value


class CanaryConfig(_Section):
    version: str
    weight: float = Field(ge=0, le=1)
    """Share of the calls without a pin that go to the canary version (0..1)."""


class RollbackConfig(_Section):
    error_rate: float = Field(default=0.2, gt=0, le=1)
    """Roll back when at least this share of the canary's calls in ``window`` failed ..."""
    window: float = 60.0
    min_calls: int = Field(default=20, ge=1)
    """... and the window holds at least this many of its calls."""

    _d = field_validator("window", mode="before")(_positive_duration)


class VersionedToolConfig(_Section):
    """One exposed tool served by several versions (see :mod:`mcplane.gateway.versions`)."""

    versions: dict[str, VersionTarget] = Field(min_length=1)
    default: str
    canary: CanaryConfig | None = None
    rollback: RollbackConfig | None = RollbackConfig()
    """Automatic return to ``default`` when the canary fails; ``off`` (or null) turns it off."""
    expose_versions: bool = True
    """Whether each version also stays listed and callable under its own namespaced name."""

    @field_validator("rollback", mode="before")
    @classmethod
    def _off(cls, value: Any) -> Any:
        return None if value is False or value == "off" else value

    @field_validator("versions")
    @classmethod
    def _names(cls, value: dict[str, VersionTarget]) -> dict[str, VersionTarget]:
        for name in value:
            if not _VERSION.match(name):
                raise ValueError(f"version {name!r}: expected letters, digits, '.', '-' or '_' (at most 64)")
        return value

    @model_validator(mode="after")
    def _known(self) -> VersionedToolConfig:
        if self.default not in self.versions:
            raise ValueError(f"default: {self.default!r} is not one of the versions ({', '.join(self.versions)})")
        if self.canary is not None:
            if self.canary.version not in self.versions:
                raise ValueError(f"canary.version: {self.canary.version!r} is not one of the versions")
            if self.canary.version == self.default:
                raise ValueError("canary.version: the canary must differ from the default version")
        return self


class ReloadConfig(_Section):
    watch: bool = True
    """Reload when the file changes (its content is compared every ``interval``); SIGHUP always reloads."""
    interval: float = 2.0
    drain: float = 30.0
    """How long calls in flight on a removed or changed upstream may take before its old connection closes."""

    _d = field_validator("interval", "drain", mode="before")(_positive_duration)

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("expected a duration above 0")
        return value


class DiscoveryConfig(_Section):
    """How callers discover tools (see :mod:`mcplane.gateway.search`).

    ``mode: list`` (default): ``tools/list`` lists every tool. ``mode: search``: it lists
    ``search_tools`` and ``call_tool`` (plus the tools ``always_list`` globs match); every tool
    stays callable by its own name. ``max_results`` is the most tools one search returns (its
    ``limit`` argument's default and maximum).
    """

    mode: Literal["list", "search"] = "list"
    always_list: list[str] = Field(default_factory=list)
    max_results: int = Field(default=10, ge=1, le=50)


class GatewayConfig(BaseModel):
    """The whole of ``gateway.yaml``: the plane's sections and the upstreams."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    plane: PlaneConfig = PlaneConfig()
    upstreams: dict[str, UpstreamConfig] = Field(default_factory=dict)
    versions: dict[str, VersionedToolConfig] = Field(default_factory=dict)
    reload: ReloadConfig = ReloadConfig()
    shared_state: SharedStateConfig = SharedStateConfig()
    integrity: IntegrityConfig = IntegrityConfig()
    discovery: DiscoveryConfig = DiscoveryConfig()

    def namespace_of(self, upstream: str) -> str | None:
        """The upstream's namespace; ``None`` when its names are exposed as they are (``namespace: false``)."""
        return namespace_of(upstream, self.upstreams[upstream])

    def prefix_of(self, upstream: str) -> str:
        """What the upstream's names are prefixed with: ``<namespace>__``, or nothing."""
        namespace = self.namespace_of(upstream)
        return "" if namespace is None else namespace + SEPARATOR

    @property
    def root(self) -> str | None:
        """The upstream exposed without a namespace, if any."""
        return next((name for name, u in self.upstreams.items() if u.namespace is False), None)

    @model_validator(mode="after")
    def _consistent(self) -> GatewayConfig:
        seen: dict[str, str] = {}
        root: str | None = None
        for name, upstream in self.upstreams.items():
            namespace = namespace_of(name, upstream)
            if namespace is None:
                if root is not None:  # two catalogs under one set of names: any tool could clash
                    raise ValueError(
                        f"upstreams.{name}: namespace: false is also set on {root!r}; at most one upstream "
                        "may be exposed without a namespace (their names could clash)"
                    )
                root = name
            elif upstream.namespace is None and (SEPARATOR in name or not _NAMESPACE.match(name)):
                raise ValueError(f"upstreams.{name}: the name is the namespace; set namespace: to a valid one")
            elif namespace in seen:
                raise ValueError(f"upstreams.{name}: namespace {namespace!r} is also used by {seen[namespace]!r}")
            else:
                seen[namespace] = name
            for glob, deps in upstream.depends_on.items():
                for dep in deps:
                    if dep not in self.upstreams:
                        raise ValueError(f"upstreams.{name}.depends_on.{glob}: unknown upstream {dep!r}")
        self._check_versions()
        return self

    def target_of(self, exposed: str, version: str) -> str:
        """The namespaced name a version of a versioned tool is served as (``users_v2__fetch_user``)."""
        target = self.versions[exposed].versions[version]
        return self.prefix_of(target.upstream) + (target.tool or exposed.rsplit(SEPARATOR, 1)[-1])

    def _check_versions(self) -> None:
        for exposed, tool in self.versions.items():
            if not _TOOL_NAME.match(exposed):
                raise ValueError(f"versions.{exposed}: expected a tool name of 1-128 letters, digits, '.', '-' or '_'")
            for version, target in tool.versions.items():
                if target.upstream not in self.upstreams:
                    where = f"versions.{exposed}.versions.{version}.upstream"
                    raise ValueError(f"{where}: unknown upstream {target.upstream!r}")
        targets = {self.target_of(e, v): (e, v) for e, tool in self.versions.items() for v in tool.versions}
        for exposed in self.versions:
            if exposed in targets:  # calling it would route to itself (or to another versioned tool)
                owner, version = targets[exposed]
                raise ValueError(f"versions.{exposed}: the name is version {version!r} of {owner!r}; expose another")


def namespace_of(name: str, upstream: UpstreamConfig) -> str | None:
    """The namespace of the upstream ``name``: its ``namespace``, else its name; ``None`` for ``namespace: false``."""
    if upstream.namespace is False:
        return None
    return upstream.namespace or name


def parse_gateway_config(
    tree: Mapping[str, Any], *, source: str = "(gateway config)", secrets: Secrets | None = None
) -> GatewayConfig:
    """Validate a resolved tree; errors name the source, the key path and what was expected."""
    rest = dict(tree)
    upstreams = rest.pop("upstreams", None) or {}
    sections = ("versions", "reload", "shared_state", "integrity", "discovery")
    gateway = {key: rest.pop(key) for key in sections if rest.get(key) is not None}
    try:
        plane = PlaneConfig.model_validate(rest)
    except ValidationError as exc:
        raise _config_error(source, exc, ()) from None
    plane._secrets = secrets  # pyright: ignore[reportPrivateUsage]
    try:
        return GatewayConfig(plane=plane, upstreams=upstreams, **gateway)
    except ValidationError as exc:
        raise _config_error(source, exc, ("upstreams",)) from None


def _config_error(source: str, exc: ValidationError, prefix: tuple[str, ...]) -> ConfigError:
    first = exc.errors(include_url=False)[0]
    loc: tuple[Any, ...] = tuple(first["loc"])
    # A union of endpoint kinds reports the member tried; keep the path readable.
    loc = tuple(part for part in loc if part not in ("StdioEndpoint", "HTTPEndpoint"))
    message = str(first["msg"]).removeprefix("Value error, ")
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    if prefix and not loc:  # a check across sections: its message starts with the key path
        return ConfigError(f"{source}: {message}{more}")
    where = ".".join(str(part) for part in loc) or "(top level)"
    return ConfigError(f"{source}: {where}: {message}{more}")


def load_gateway_config(path: str | Path, *, environ: Mapping[str, str] | None = None) -> GatewayConfig:
    """Read ``gateway.yaml``, apply ``MCPLANE__`` overrides, resolve secret references, validate."""
    environ = os.environ if environ is None else environ
    file = Path(path)
    tree = deep_merge(read_yaml_file(file), env_overrides(environ))
    secrets = Secrets(environ=environ, base_dir=file.parent)
    return parse_gateway_config(secrets.resolve(tree), source=str(file), secrets=secrets)
