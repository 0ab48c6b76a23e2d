"""The bench's legs and server configurations (what ``run.py`` measures)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))


SERVERS = BENCH / "servers"
PYTHON = sys.executable

LEGS: dict[str, str] = {
    "http-2026": "Streamable HTTP, 2026-07-28 stateless (per-request `_meta` envelope + routing headers)",
    "http-2025": "Streamable HTTP, 2025-11-25 with a session (initialize once, `Mcp-Session-Id` on every call)",
    "stdio": "stdio, 2026-07-28 envelope (what the SDK client sends by default), pipelined",
    "stdio-2025": "stdio, 2025-11-25 after initialize, pipelined (optional leg)",
}
DEFAULT_LEGS = ("http-2026", "http-2025", "stdio")
HTTP_LEGS = frozenset({"http-2026", "http-2025"})
STDIO_LEGS = frozenset({"stdio", "stdio-2025"})
ALL_LEGS = HTTP_LEGS | STDIO_LEGS


@dataclass(frozen=True)
class Variant:
    """One server configuration. ``role`` decides which ratio it feeds."""

    key: str
    role: str  # mcplane | sdk | fastmcp | floor | info
    script: str
    args: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Extra server flags per leg; a leg missing here is not run for this variant."""
    config: dict[str, str] = field(default_factory=dict)
    """What the configuration is, per leg, for the table."""
    auth: bool = False
    """The server wants ``Authorization: Bearer <JWT>`` (readiness probe and load generator send one)."""
    default: bool = True
    """Part of a plain ``python bench/run.py``; the layer sweep's variants are not (``--sweep``)."""
    base: str | None = None
    """Layer sweep: the variant this one adds one layer to (its delta is computed against it)."""
    adds: str = ""
    """Layer sweep: what this variant adds to ``base``."""
    upstream: str | None = None
    """Gateway leg: this server is a proxy; the runner starts this variant first (on the load
    generator's CPU) and passes its URL as ``--upstream``."""
    tool: str = "echo"
    """The echo tool's name on this server (a gateway namespaces it)."""

    @property
    def layered(self) -> bool:
        return any("--layers" in flags for flags in self.args.values())

    @property
    def observed(self) -> bool:
        """Configured by ``--observability`` (needs the run's span sink and log directory, ``observe.py``)."""
        return any("--observability" in flags for flags in self.args.values())


EVERY_LEG = {leg: () for leg in ALL_LEGS}
VARIANTS: tuple[Variant, ...] = (
    Variant(
        "mcplane",
        "mcplane",
        "mcplane_server.py",
        EVERY_LEG,
        {leg: "bare `Plane`, defaults (`mcplane run`)" for leg in ALL_LEGS},
    ),
    Variant(
        "mcplane-json",
        "info",
        "mcplane_server.py",
        {"http-2026": ("--json",), "http-2025": ("--json",)},
        {leg: "`Plane`, `json_response=True` (informative, not in ratios)" for leg in HTTP_LEGS},
    ),
    Variant(
        "sdk-default",
        "sdk",
        "sdk_server.py",
        EVERY_LEG,
        {
            **{leg: "`MCPServer.streamable_http_app()` defaults (stateful, SSE)" for leg in HTTP_LEGS},
            **{leg: '`MCPServer.run("stdio")`' for leg in STDIO_LEGS},
        },
    ),
    Variant(
        "sdk-best",
        "sdk",
        "sdk_server.py",
        {"http-2026": ("--stateless", "--json"), "http-2025": ("--json",)},
        {
            "http-2026": "`stateless_http=True, json_response=True`",
            "http-2025": "`json_response=True` (stateful: the leg needs a session)",
        },
    ),
    Variant(
        "fastmcp",
        "fastmcp",
        "fastmcp_server.py",
        EVERY_LEG,
        {
            **{leg: '`FastMCP.run(transport="http")` defaults' for leg in HTTP_LEGS},
            **{leg: '`FastMCP.run(transport="stdio")`' for leg in STDIO_LEGS},
        },
    ),
    Variant(
        "floor",
        "floor",
        "floor_server.py",
        EVERY_LEG,
        {
            **{leg: "raw Starlette route + orjson (no MCP)" for leg in HTTP_LEGS},
            **{leg: "raw asyncio line loop + orjson (no MCP)" for leg in STDIO_LEGS},
        },
    ),
)


def _layered(
    key: str,
    role: str,
    layers: str,
    describe: str,
    *,
    fsync: str = "interval",
    default: bool = False,
    base: str | None = None,
    adds: str = "",
) -> Variant:
    """A bare-echo Plane plus pipeline layers (``fullpipe.py``), on the HTTP legs."""
    return Variant(
        key,
        role,
        "mcplane_server.py",
        {leg: ("--layers", layers, "--fsync", fsync) for leg in HTTP_LEGS},
        {leg: describe for leg in HTTP_LEGS},
        auth="auth" in layers.split(","),
        default=default,
        base=base,
        adds=adds,
    )


FULL = "auth,authz,ratelimit,audit"
FULL_DESCRIPTION = (
    "`Plane` + JWT HS256 auth + authorization (role rule) + rate limit on Redis (1000000/second, principal) "
    "+ audit JSONL file, fsync {}"
)
VARIANTS += (
    _layered(
        "mcplane-full",
        "full",
        FULL,
        FULL_DESCRIPTION.format("`interval`"),
        default=True,
        base="mcplane+ratelimit",
        adds="+ audit (JSONL, fsync interval)",
    ),
    _layered(
        "mcplane-full-fsync",
        "full",
        FULL,
        FULL_DESCRIPTION.format("`always` (informative)"),
        fsync="always",
        default=True,
        base="mcplane+ratelimit",
        adds="+ audit (JSONL, fsync always)",
    ),
    _layered(
        "mcplane-full-lease",
        "full",
        FULL.replace("ratelimit", "ratelimit-lease"),
        FULL_DESCRIPTION.format("`interval`") + " with a leased allowance (`lease: {max: 64, ttl: 1s}`)",
        default=True,
        base="mcplane-full",
        adds="+ leased rate limit",
    ),
    _layered(
        "mcplane-full-guards",
        "full",
        FULL + ",guards,abac",
        FULL_DESCRIPTION.format("`interval`")
        + " + output guards (`refuse: [secrets, private_key]`, `mask: [credentials]`) + a CEL (ABAC) rule "
        "(informative)",
        default=True,
        base="mcplane-full",
        adds="+ output guards + CEL rule",
    ),
    _layered(
        "mcplane-full-one",
        "full",
        FULL.replace("ratelimit", "ratelimit-lease").replace("audit", "audit-one"),
        FULL_DESCRIPTION.format("`interval`")
        + " with a leased allowance and one audit record per call (`audit.pending: false`)",
        default=True,
        base="mcplane-full-lease",
        adds="+ one audit record per call",
    ),
    # The audit floor (not in a plain run: `--servers mcplane,mcplane-full-lease,mcplane-floor,mcplane-floor-one`):
    # the leased full pipeline with mcplane's audit slot replaced by `fullpipe.FloorAudit`, the least an audit
    # slot of that shape must do per call. Not an audit log; it bounds what the 0.7x target leaves.
    _layered(
        "mcplane-floor",
        "full",
        "auth,authz,ratelimit-lease,audit-floor",
        "`Plane` + auth + authorization + leased Redis rate limit + the audit floor (two chained records per call, "
        "one `write` each, nothing else; not an audit log)",
        default=False,
        base="mcplane-full-lease",
        adds="the audit floor instead of mcplane's audit slot",
    ),
    _layered(
        "mcplane-floor-one",
        "full",
        "auth,authz,ratelimit-lease,audit-floor-one",
        "`Plane` + auth + authorization + leased Redis rate limit + the one-record audit floor (one chained "
        "record per call, after it; not an audit log)",
        default=False,
        base="mcplane-floor",
        adds="one floor record per call instead of two",
    ),
    _layered(
        "mcplane-no-audit",
        "full",
        "auth,authz,ratelimit-lease",
        "`Plane` + auth + authorization + leased Redis rate limit, no audit slot",
        default=False,
        base="mcplane",
        adds="the full pipeline's layers but audit",
    ),
    # The layer sweep (`--sweep`): one layer at a time, cumulatively, then audit and the Redis round trip alone.
    _layered("mcplane+auth", "layer", "auth", "`Plane` + JWT HS256 auth", base="mcplane", adds="+ auth (JWT HS256)"),
    _layered(
        "mcplane+authz",
        "layer",
        "auth,authz",
        "`Plane` + auth + authorization",
        base="mcplane+auth",
        adds="+ authorization (role rule)",
    ),
    _layered(
        "mcplane+rl-memory",
        "layer",
        "auth,authz,ratelimit-memory",
        "`Plane` + auth + authorization + rate limit in memory",
        base="mcplane+authz",
        adds="+ rate limit, memory backend",
    ),
    _layered(
        "mcplane+ratelimit",
        "layer",
        "auth,authz,ratelimit",
        "`Plane` + auth + authorization + rate limit on Redis",
        base="mcplane+authz",
        adds="+ rate limit, Redis backend",
    ),
    _layered(
        "mcplane+audit",
        "layer",
        "audit",
        "`Plane` + audit JSONL file, fsync `interval` (no auth)",
        base="mcplane",
        adds="+ audit alone (fsync interval)",
    ),
)
SWEEP = (
    "mcplane",
    "mcplane+auth",
    "mcplane+authz",
    "mcplane+rl-memory",
    "mcplane+ratelimit",
    "mcplane-full",
    "mcplane-full-fsync",
    "mcplane+audit",
)
FULL_TARGET = 0.7
PIPELINE_NOTES = (
    "**Where the added cost goes** (layer sweep `python bench/run.py --sweep --repeat 2` of 2026-11-24, "
    "server CPU µs per call added at concurrency 32, http-2026 / http-2025; details, profiles and the fixes in "
    '`bench/PROFILE.md`, section "The full pipeline"): **audit** (JSONL, `fsync: interval`) +101 / +97, the '
    "costliest layer; **rate limit on Redis** +54 / +49 (+22 of it the middleware and GCRA bookkeeping, as on the "
    "memory backend; the rest the pipelined Redis round trip), and at concurrency 1 the costliest: +141 / +147 µs of "
    "CPU and +182 / +189 µs of p50, one unshared round trip per call; **JWT auth** +13 / +13; **authorization** +2 / "
    "+2. `fsync: always` instead of `interval`: +17 / +30 at concurrency 32 (concurrent records share an fsync), "
    "but +393 / +422 µs of CPU and +0.6 ms of p50 at concurrency 1 (two fsyncs per call). Before the fixes in "
    "`src/mcplane/auth`, `audit`, `backends` (verified-token cache, inline JSONL appends and group commit, "
    "auto-pipelined Redis hits) the same layers cost audit +341, Redis rate limit +125, JWT auth +115, "
    "authorization -3 (http-2026), and the full pipeline ran at 0.15 to 0.21\u00d7 the bare Plane. The "
    '0.7\u00d7 goal is not met. Round two (`bench/PROFILE.md`, "Round two") made the per-call `Context`, the '
    "hot path and the heap cheaper, which lowers the bare Plane's cost more than the layers' (so the ratio moves "
    "less than the absolute cost); what the layers still cost per call (redis-py's pipeline machinery around each "
    "batch of GCRA scripts, two sealed audit records with five syscalls each, the HTTP tier's token check) is "
    "listed there."
)

# The observability leg (`--observability`): the bare echo Plane with each observability setting
# of `observe.py`, configured and logging the way `mcplane run --config mcplane.yaml` does.
OBSERVABILITY = ("obs-off", "obs-metrics", "obs-logs", "obs-all")
VARIANTS += tuple(
    Variant(
        key,
        "obs",
        "mcplane_server.py",
        {leg: ("--observability", key.removeprefix("obs-")) for leg in HTTP_LEGS},
        {leg: describe for leg in HTTP_LEGS},
        default=False,
    )
    for key, describe in (
        ("obs-off", "`Plane`, observability off: `metrics.enabled: false`, `log_level: warning`, no tracing"),
        ("obs-metrics", "`Plane` + Prometheus metrics (no call log: `log_level: warning`), no tracing"),
        (
            "obs-logs",
            "`Plane` + metrics + one JSON call-log line per call (`log_level: info`, the `mcplane run` default), "
            "tracing off",
        ),
        (
            "obs-all",
            "`Plane` + metrics + call logs + tracing: OTel SDK `TracerProvider`, `BatchSpanProcessor`, OTLP/HTTP "
            "protobuf exporter to a local collector stand-in",
        ),
    )
)
OBS_BASE = "obs-off"

# The gateway leg (`--gateway`): one hop in front of the bare echo Plane, against the same Plane direct.
GATEWAY = ("mcplane", "sdk-best", "hop-mcplane", "hop-mcplane-sdk", "hop-fastmcp", "hop-fastmcp-reuse")
GATEWAY_DIRECT = "mcplane"
GATEWAY_NAMESPACE = "bench"
VARIANTS += (
    Variant(
        "hop-mcplane",
        "hop",
        "gateway_server.py",
        {leg: () for leg in HTTP_LEGS},
        {
            leg: "`mcplane gateway` (`Gateway.from_config(gateway.yaml)`, one Streamable HTTP upstream, defaults but "
            "`log_level: warning`) → bare `Plane`"
            for leg in HTTP_LEGS
        },
        default=False,
        upstream="mcplane",
        tool=f"{GATEWAY_NAMESPACE}__echo",
    ),
    Variant(
        "hop-mcplane-sdk",
        "hop",
        "gateway_server.py",
        {leg: () for leg in HTTP_LEGS},
        {leg: "`mcplane gateway` (as `hop-mcplane`) → the SDK's best configuration (`sdk-best`)" for leg in HTTP_LEGS},
        default=False,
        upstream="sdk-best",
        tool=f"{GATEWAY_NAMESPACE}__echo",
    ),
    Variant(
        "hop-fastmcp",
        "hop",
        "fastmcp_proxy.py",
        {leg: () for leg in HTTP_LEGS},
        {
            leg: "FastMCP `create_proxy(url)` defaults (a new backend client per request) → bare `Plane`"
            for leg in HTTP_LEGS
        },
        default=False,
        upstream="mcplane",
    ),
    Variant(
        "hop-fastmcp-reuse",
        "hop",
        "fastmcp_proxy.py",
        {leg: ("--reuse",) for leg in HTTP_LEGS},
        {
            leg: "FastMCP `create_proxy(connected Client(url))`: one reused backend session → bare `Plane`"
            for leg in HTTP_LEGS
        },
        default=False,
        upstream="mcplane",
    ),
)
HOP_TARGET_P50_MS = 0.3
"""Goal (reported, not asserted): mcplane's hop adds at most this much p50 at concurrency 1."""
HOP_TARGET_THROUGHPUT = 0.6
"""Goal: through mcplane's gateway at concurrency 32, at least this share of direct calls/s."""
OVERHEAD_RESULTS = BENCH / "RESULTS-overhead.md"
"""Where a run with ``--observability`` or ``--gateway`` writes its report (``RESULTS.md`` stays the main run's)."""
VARIANT_BY_KEY = {v.key: v for v in VARIANTS}
TARGET_RATIO: dict[str, float] = {"http-2026": 2.0, "http-2025": 2.0, "stdio": 3.0}
"""Goal per leg (issue: performance, round two): bare mcplane ÷ the SDK's best configuration."""
NOISY = 0.10
"""A cell is flagged noisy when other processes used more than this share of a CPU during its window."""
