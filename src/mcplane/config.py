"""Typed configuration: ``mcplane.yaml`` plus environment overrides, built once and passed in.

Loading order: the YAML file, then ``MCPLANE__SECTION__KEY=value`` environment overrides (values
parsed as YAML scalars, so ``MCPLANE__SERVER__DEFAULT_TIMEOUT=2s`` and
``MCPLANE__CACHE__ENABLED=true`` work), then secret references (``${env:NAME}``,
``${file:PATH}``, ``${vault:PATH#KEY}``) resolved, then validation. A mistake is reported with
the file, the key path and what was expected, and nothing starts.

Per-tool policy comes from the decorator and from ``tools:`` globs in the file; **the file wins**,
so operators change policy without a redeploy. Among globs, the most specific (most literal
characters) wins, and the one written first among equally specific ones; an exact name beats any glob.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from mcplane.auth.config import AuthConfig
from mcplane.auth.policy import AccessPolicy
from mcplane.configfile import deep_merge, env_overrides, field_duration, read_yaml_file
from mcplane.errors import ConfigError
from mcplane.guards.config import GuardsConfig
from mcplane.oauth.config import OAuthServerConfig
from mcplane.secrets import Secret, Secrets
from mcplane.tool_policy import ToolPolicy

__all__ = ["PlaneConfig", "ToolPolicySection", "load_config", "merge_policy"]

_ZERO = re.compile(r"^\s*0+(?:\.0+)?\s*(?:ms|s|m|h)?\s*$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


def _rate_limit(value: str | list[str] | None) -> str | list[str] | None:
    """Check a rate limit (``"100/minute"`` or a list) when the file is read, not at the first call."""
    if value is None or value in ("off", "") or value == []:
        return value
    from mcplane.backends.rate_limit import parse_limits

    parse_limits(value)  # raises ValueError with what was expected
    return value


class ToolPolicySection(_Section):
    """What an operator can set per tool (or per glob of tools): the file's form of a
    :class:`~mcplane.tool_policy.ToolPolicy` (and the decorator's keywords, checked the same way)."""

    timeout: float | None = None
    rate_limit: str | list[str] | None = None
    rate_limit_scope: Literal["principal", "global", "both"] | None = None
    cache_ttl: float | None = None
    cache_scope: Literal["private", "public"] | None = None
    roles: list[str] | None = None
    scopes: list[str] | None = None
    cost: int | None = Field(default=None, ge=0)
    retryable: bool | None = None

    @field_validator("timeout", mode="before")
    @classmethod
    def _parse_duration(cls, value: Any) -> float | None:
        return field_duration(value)

    @field_validator("cache_ttl", mode="before")
    @classmethod
    def _parse_ttl(cls, value: Any) -> float | None:
        if _ZERO.match(str(value)) and not isinstance(value, bool):
            return 0.0  # caching off for the tool (e.g. the file turning off a decorator's cache_ttl)
        return field_duration(value)

    @field_validator("rate_limit")
    @classmethod
    def _parse_rate_limit(cls, value: str | list[str] | None) -> str | list[str] | None:
        return _rate_limit(value)

    def as_policy(self) -> dict[str, Any]:
        """The keys this section sets, to overlay on a policy (:meth:`ToolPolicy.overlay`)."""
        return self.model_dump(exclude_none=True)

    def to_policy(self) -> ToolPolicy:
        """This section alone as a runtime policy."""
        return ToolPolicy.from_mapping(self.as_policy())


class ServerSection(_Section):
    name: str | None = None
    default_timeout: float | None = 5.0
    shutdown_grace: float = Field(default=30.0, ge=0)
    """On SIGTERM/SIGINT, how long calls in flight may take to finish before they are cut short."""

    @field_validator("default_timeout", "shutdown_grace", mode="before")
    @classmethod
    def _parse_duration(cls, value: Any) -> float | None:
        return field_duration(value)


class HTTPSection(_Section):
    path: str = "/mcp"
    max_body_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    allowed_hosts: list[str] | None = None
    allowed_origins: list[str] | None = None
    json_response: bool = False
    fast_path: bool = True
    header_timeout: float = Field(default=10.0, gt=0)
    """Seconds a connection gets to deliver a request's headers; slower ones are closed (408)."""
    body_timeout: float = Field(default=30.0, gt=0)
    """Seconds a request gets to deliver its body once its headers are in; slower ones are closed."""
    max_header_bytes: int = Field(default=32 * 1024, gt=0)
    """Largest request header block (all lines); larger ones answer 431 and close, before authentication."""
    max_headers: int = Field(default=100, gt=0)
    """Most header lines a request may have; more answer 431 and close."""
    max_websockets: int = Field(default=1024, gt=0)
    """Open WebSocket connections at most; one more is closed with 1013 (try again later)."""
    ws_idle_timeout: float = Field(default=300.0, gt=0)
    """A WebSocket connection with no client message and no call open this long is closed (1000, idle)."""
    trusted_proxies: list[str] = Field(default_factory=list)
    """Peers (addresses, CIDR blocks) whose ``X-Forwarded-For`` names the client; none by default."""

    @field_validator("header_timeout", "body_timeout", "ws_idle_timeout", mode="before")
    @classmethod
    def _parse_duration(cls, value: Any) -> float | None:
        return field_duration(value)

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, entries: list[str]) -> list[str]:
        from mcplane.audit.forwarded import parse_network

        for entry in entries:
            parse_network(entry)  # raises ValueError naming what is expected
        return entries


class LimitsSection(_Section):
    """Bounds on what one call may make the server do (see docs/reliability.md)."""

    max_argument_nodes: int = Field(default=100_000, gt=0)
    """Values (objects, arrays, scalars) a tool call's arguments may hold; more is ``invalid_arguments``."""
    max_argument_depth: int = Field(default=64, gt=0)
    """How deeply a tool call's arguments may nest."""
    max_error_details: int = Field(default=20, gt=0)
    """Problems listed in an ``invalid_arguments`` answer (then a count of the rest)."""
    max_result_bytes: int = Field(default=16 * 1024 * 1024, gt=0)
    """Largest tool result sent; a larger one answers ``internal_error`` (``upstream_error`` from a gateway)."""
    list_page_size: int = Field(default=500, gt=0)
    """Entries per page of ``tools/list``, ``resources/list``, ``resources/templates/list`` and ``prompts/list``."""


Backend = Literal["memory", "redis"]


class RateLimitLeaseSection(_Section):
    """Leased allowance on the Redis backend (:mod:`mcplane.backends.lease`)."""

    max: int = Field(default=64, ge=1, le=100_000)
    """Most calls one lease takes (never more than 1/16 of a limit's burst either)."""
    ttl: float = Field(default=1.0, gt=0)
    """Held calls lapse after this long, spent or not."""

    @field_validator("ttl", mode="before")
    @classmethod
    def _parse_duration(cls, value: Any) -> float | None:
        return field_duration(value)


class RateLimitSection(_Section):
    backend: Backend = "memory"
    default: str | list[str] | None = None
    """Limit for tools whose policy declares none (``None``: such tools are not limited)."""
    scope: Literal["principal", "global", "both"] = "principal"
    fail_open: bool = False
    lease: RateLimitLeaseSection | None = None
    """Take calls from Redis in batches and spend them locally (``backend: redis`` only)."""

    @field_validator("default")
    @classmethod
    def _parse_rate_limit(cls, value: str | list[str] | None) -> str | list[str] | None:
        return _rate_limit(value)

    @model_validator(mode="after")
    def _lease_needs_redis(self) -> RateLimitSection:
        if self.lease is not None and self.backend != "redis":
            raise ValueError("lease applies to backend: redis only (a memory limiter has nothing to lease from)")
        return self


class CacheSection(_Section):
    enabled: bool = False
    """Cache ``readOnlyHint`` tools that declare no ``cache_ttl`` for ``default_ttl``."""
    backend: Backend = "memory"
    default_ttl: float = 60.0
    max_entries: int = Field(default=10_000, gt=0)
    max_bytes: int = Field(default=1_048_576, gt=0)
    encryption_keys: list[Secret] = Field(default_factory=list)
    """Fernet keys, newest first: values are encrypted at rest; older keys still decrypt."""
    fail_open: bool = True

    @field_validator("default_ttl", mode="before")
    @classmethod
    def _parse_duration(cls, value: Any) -> float | None:
        return field_duration(value)

    @field_validator("encryption_keys")
    @classmethod
    def _fernet_keys(cls, keys: list[Secret]) -> list[Secret]:
        from cryptography.fernet import Fernet

        for position, key in enumerate(keys, 1):
            try:
                Fernet(key.get())
            except (ValueError, TypeError):  # never echo the key: it is a secret
                raise ValueError(
                    f"key #{position} is not a valid Fernet key (make one with Fernet.generate_key())"
                ) from None
        return keys


class BudgetSection(_Section):
    limit: int = Field(ge=0)
    """Units (declared ``cost`` or estimated tokens) per principal per window."""
    window: float = 3600.0
    session_limit: int | None = Field(default=None, ge=0)
    charge_results: bool = True
    backend: Backend = "memory"
    fail_open: bool = False

    @field_validator("window", mode="before")
    @classmethod
    def _parse_duration(cls, value: Any) -> float | None:
        return field_duration(value)


class StateSection(_Section):
    """Session state for tools (``ctx.state``): where it lives and how long it is kept."""

    backend: Backend = "memory"
    ttl: float = 86_400.0
    """How long a key lives after its last write, unless the write says otherwise."""
    max_value_bytes: int = Field(default=65_536, gt=0)
    """Largest value (encoded JSON) one key may hold."""

    @field_validator("ttl", mode="before")
    @classmethod
    def _parse_duration(cls, value: Any) -> float | None:
        return field_duration(value)


class RedisSection(_Section):
    """How mcplane's clients connect to ``redis_url`` (see ``mcplane.backends.redis_connect``)."""

    socket_timeout: float = Field(default=2.0, gt=0)
    connect_timeout: float = Field(default=2.0, gt=0)
    retries: int = Field(default=1, ge=0)
    max_connections: int = Field(default=64, ge=1)
    health_check_interval: float = Field(default=15.0, ge=0)

    @field_validator("socket_timeout", "connect_timeout", "health_check_interval", mode="before")
    @classmethod
    def _parse_duration(cls, value: Any) -> float | None:
        return field_duration(value)


class AuditSection(_Section):
    sink: Literal["file", "postgres"] = "file"
    path: str = "mcplane-audit.jsonl"
    fsync: Literal["always", "interval", "never"] = "always"
    dsn: Secret | None = None
    table: str = "mcplane_audit"
    fail_open: bool = False
    pending: bool = True
    """A ``pending`` record before each call and its outcome after; ``False``: one record per call, its outcome."""
    trust_forwarded: bool = False
    """Deprecated: believes ``X-Forwarded-For`` from every peer; list your proxies in ``http.trusted_proxies``."""
    rotate_bytes: int | None = Field(default=104_857_600, gt=0)
    """File sink: start a new segment once the active one holds this many bytes (``None``: never by size)."""
    rotate_interval: float | None = None
    """File sink: start a new segment when this period (``24h``: each UTC day) turns (``None``: never by time)."""
    checkpoint_key: Secret | None = None
    """Ed25519 private key signing checkpoints; ``None``: one generated beside the checkpoints."""
    checkpoint_public_keys: list[str] = Field(default_factory=list)
    """Earlier checkpoint keys (public halves) the start-up check still accepts after a key change."""
    checkpoint_path: str | None = None
    """File sink: the checkpoint file (``None``: ``<path>.checkpoints``)."""
    checkpoint_table: str | None = None
    """PostgreSQL sink: the checkpoints table (``None``: ``<table>_checkpoints``)."""
    checkpoint_every: int = Field(default=10_000, gt=0)
    checkpoint_interval: float = 30.0
    on_broken_chain: Literal["refuse", "not_ready"] = "refuse"
    """The chain does not match its latest checkpoint at start: refuse to start, or start not ready."""

    @field_validator("table", "checkpoint_table")
    @classmethod
    def _table_name(cls, table: str | None) -> str | None:
        from mcplane.audit.postgres import table_ident

        if table is not None:
            table_ident(table)  # raises ValueError naming what is expected
        return table

    @field_validator("rotate_interval", "checkpoint_interval", mode="before")
    @classmethod
    def _parse_duration(cls, value: Any) -> float | None:
        return field_duration(value)

    @field_validator("checkpoint_key")
    @classmethod
    def _private_key(cls, key: Secret | None) -> Secret | None:
        from mcplane.audit.keys import load_private_key

        if key is not None:
            load_private_key(key.get())  # the error never echoes the key
        return key

    @field_validator("checkpoint_public_keys")
    @classmethod
    def _public_keys(cls, keys: list[str]) -> list[str]:
        from mcplane.audit.keys import load_public_key

        for position, text in enumerate(keys, 1):
            try:
                load_public_key(text)
            except ValueError as exc:
                raise ValueError(f"key #{position}: {exc}") from None
        return keys

    @model_validator(mode="after")
    def _dsn_for_postgres(self) -> AuditSection:
        if self.sink == "postgres" and self.dsn is None:
            raise ValueError("audit.sink postgres needs audit.dsn")
        return self


class MetricsSection(_Section):
    enabled: bool = True
    """Count and time every call; serve Prometheus text at ``/metrics``."""
    port: int | None = Field(default=None, ge=1, le=65535)
    """Serve ``/metrics`` on this port only (not on the MCP port)."""
    host: str = "0.0.0.0"
    """Interface for :attr:`port`."""


class TracingSection(_Section):
    enabled: bool = False
    """One OpenTelemetry span per call, exported over OTLP/HTTP (needs ``mcplane[otel]``)."""
    otlp_endpoint: str | None = None
    """Collector URL (``http://collector:4318``); unset: ``$OTEL_EXPORTER_OTLP_ENDPOINT`` or localhost."""
    service_name: str | None = None
    """``service.name`` of the spans; unset: ``$OTEL_SERVICE_NAME``, else ``server.name``, else ``mcplane``."""


class ObservabilitySection(_Section):
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    """Level of mcplane's own loggers (one ``info`` event per call and per lifecycle step)."""
    log_format: Literal["json", "text", "auto"] = "auto"
    """``auto``: human-readable text when stderr is a terminal, JSON lines otherwise."""
    metrics: MetricsSection = MetricsSection()
    tracing: TracingSection = TracingSection()

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


class SessionsSection(_Section):
    """Sessions (2025-11-25) and ``requestState`` (2026-07-28) that every replica can continue."""

    keys: list[Secret] = Field(default_factory=list)
    """Secrets of at least 32 bytes, newest first: the first seals session ids and ``requestState``,
    every one unseals (rotation). Empty: a random key per process (sessions stay on one process)."""
    ttl: float = Field(default=86_400.0, gt=0)
    """How long a session id is accepted after the session opened."""
    request_state_ttl: float = Field(default=600.0, gt=0)
    """How long a sealed ``requestState`` (one multi-round-trip round) is accepted."""
    max_open: int | None = Field(default=10_000, gt=0)
    """Open 2025-11-25 sessions per process at most; one more ``initialize`` answers 503 (null: no cap)."""
    idle_timeout: float = Field(default=60.0, gt=0)
    """A session with no request in flight and no GET stream open this long is dropped from memory: its
    sealed id is adopted again on its next request, its handlers' state records restored (≈ 30 KiB held,
    well under 1 KiB dropped). A minute outlasts the pauses inside a burst of calls (and the SSE retry
    interval) many times over; adopting a session again costs one unseal and, with Redis, one round trip."""
    fail_open: bool = False
    """Accept a session id when Redis cannot say whether it was revoked (else: 503)."""

    @field_validator("ttl", "request_state_ttl", "idle_timeout", mode="before")
    @classmethod
    def _parse_duration(cls, value: Any) -> float | None:
        return field_duration(value)

    @field_validator("keys")
    @classmethod
    def _long_enough(cls, keys: list[Secret]) -> list[Secret]:
        for position, key in enumerate(keys, 1):
            if len(key.get().encode()) < 32:  # never echo the key: it is a secret
                raise ValueError(f"key #{position} is shorter than 32 bytes (make one with secrets.token_hex(32))")
        return keys


class PlaneConfig(_Section):
    """The whole of ``mcplane.yaml``. Unknown keys are rejected, never ignored."""

    server: ServerSection = ServerSection()
    http: HTTPSection = HTTPSection()
    limits: LimitsSection = LimitsSection()
    sessions: SessionsSection = SessionsSection()
    """Session ids and ``requestState`` sealed with keys every replica shares."""
    redis_url: Secret | None = None
    """Redis for every shared layer whose ``backend`` is ``redis``: one server, Sentinel or Cluster."""
    redis: RedisSection = RedisSection()
    """Timeouts, retries and pool size of the Redis clients."""
    auth: AuthConfig | None = None
    authorization: AccessPolicy | None = None
    """Who may call what: roles/scopes by glob and CEL rules (docs/authorization.md)."""
    guards: GuardsConfig | None = None
    """What tool results are scanned for, per tool glob, and masked or refused (docs/guards.md)."""
    rate_limit: RateLimitSection | None = None
    cache: CacheSection | None = None
    budget: BudgetSection | None = None
    state: StateSection = StateSection()
    """Session state for tools (``ctx.state``); memory unless it says ``backend: redis``."""
    audit: AuditSection | None = None
    oauth: OAuthServerConfig | None = None
    """mcplane as the OAuth authorization server its clients log in through (docs/oauth.md)."""
    observability: ObservabilitySection = ObservabilitySection()
    """Logs, metrics (on unless turned off) and tracing (off unless turned on)."""
    tools: dict[str, ToolPolicySection] = Field(default_factory=dict)
    _secrets: Any = PrivateAttr(default=None)
    """The resolver the file's secret references went through (refresh and log redaction)."""

    @property
    def secrets(self) -> Secrets | None:
        return self._secrets

    @model_validator(mode="before")
    @classmethod
    def _oauth_trusts_itself(cls, data: Any) -> Any:
        """With an ``oauth`` section the server accepts the tokens it issues (no ``auth.jwt`` needed)
        and names itself as the authorization server of its protected-resource metadata."""
        if not isinstance(data, dict) or data.get("oauth") is None:  # pyright: ignore[reportUnknownMemberType]
            return data
        tree: dict[str, Any] = dict(data)  # pyright: ignore[reportUnknownArgumentType]
        section: Any = tree["oauth"]
        auth: Any = tree.get("auth")
        if isinstance(auth, dict) and isinstance(section, dict):
            auth = dict(auth)  # pyright: ignore[reportUnknownArgumentType]
            auth["oauth_server"] = True
            issuer: Any = section.get("issuer")  # pyright: ignore[reportUnknownMemberType]
            if isinstance(issuer, str) and not auth.get("authorization_servers"):
                auth["authorization_servers"] = [issuer.rstrip("/")]
            tree["auth"] = auth
        return tree

    @model_validator(mode="after")
    def _redis_when_needed(self) -> PlaneConfig:
        if self.oauth is not None:
            if self.auth is None or self.auth.resource is None:
                raise ValueError(
                    "oauth needs auth.resource: the canonical URI of this server, which tokens are bound to"
                )
            if self.state.backend != "memory" and not self.oauth.state_keys:
                raise ValueError(
                    "oauth.state_keys is empty but state.backend is shared: every replica needs the same keys"
                )
            if self.state.backend != "memory" and not self.oauth.signing_keys:
                raise ValueError(
                    "oauth.signing_keys is empty but state.backend is shared: every replica needs the same keys"
                )
        elif self.auth is not None and self.auth.oauth_server:
            raise ValueError("auth.oauth_server is set by the oauth section; remove it or add the section")
        for name in ("rate_limit", "cache", "budget", "state"):
            section = getattr(self, name)
            if section is not None and section.backend == "redis" and self.redis_url is None:
                raise ValueError(f"{name}.backend is redis but redis_url is not set")
        if self.redis_url is not None:
            from mcplane.backends.redis_connect import parse_redis_url

            try:
                parse_redis_url(self.redis_url.get())
            except ConfigError as exc:  # the message never holds the URL (it may hold a password)
                raise ValueError(exc.message) from None
        return self

    def http_options(self) -> dict[str, Any]:
        """The ``http:`` section as keyword options of :class:`~mcplane.transports.http.HTTPOptions`."""
        http = self.http
        options: dict[str, Any] = {
            "path": http.path,
            "max_body_bytes": http.max_body_bytes,
            "json_response": http.json_response,
            "fast_path": http.fast_path,
            "max_websockets": http.max_websockets,
            "ws_idle_timeout": http.ws_idle_timeout,
            "max_sessions": self.sessions.max_open,
            "session_idle_timeout": self.sessions.idle_timeout,
        }
        if http.allowed_hosts is not None:
            options["allowed_hosts"] = tuple(http.allowed_hosts)
        if http.allowed_origins is not None:
            options["allowed_origins"] = tuple(http.allowed_origins)
        if self.oauth is not None:  # the consent page posts its form from the issuer's origin
            from mcplane.transports.security import LOOPBACK_ORIGINS

            issuer = urlsplit(self.oauth.issuer)
            origins = options.get("allowed_origins", LOOPBACK_ORIGINS)
            options["allowed_origins"] = (*origins, f"{issuer.scheme}://{issuer.netloc}".lower())
        return options

    def policy_for(self, tool: str) -> dict[str, Any]:
        """The file's policy for one tool: every matching glob, most specific last (so it wins)."""
        matches = [pattern for pattern in self.tools if fnmatch.fnmatchcase(tool, pattern)]
        # Least specific first; among equally specific globs the one written first is applied last (it wins).
        matches.reverse()
        matches.sort(key=_specificity)
        merged: dict[str, Any] = {}
        for pattern in matches:
            merged.update(self.tools[pattern].as_policy())
        return merged


def _specificity(pattern: str) -> tuple[int, int]:
    exact = not any(ch in pattern for ch in "*?[")
    literal = sum(1 for ch in pattern if ch not in "*?[]")
    return (1 if exact else 0, literal)


def merge_policy(code: ToolPolicy, config: PlaneConfig | None, tool: str) -> ToolPolicy:
    """Decorator policy overlaid, key by key, by the file's policy (the file wins)."""
    if config is None:
        return code
    return code.overlay(config.policy_for(tool))


def _where(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def load_config(
    path: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    resolve: Any = None,
) -> PlaneConfig:
    """Read, override, resolve and validate. ``resolve`` maps the raw tree (secret references)."""
    environ = os.environ if environ is None else environ
    source = str(path) if path is not None else "(environment)"
    raw: dict[str, Any] = read_yaml_file(Path(path)) if path is not None else {}
    tree = deep_merge(raw, env_overrides(environ))
    secrets: Secrets | None = None
    if resolve is None:
        base = Path(path).parent if path is not None else None
        secrets = Secrets(environ=environ, base_dir=base)
        resolve = secrets.resolve
    tree = resolve(tree)
    try:
        config = PlaneConfig.model_validate(tree)
        config._secrets = secrets
        return config
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"{source}: {_where(first['loc'])}: {message}{more}") from None
