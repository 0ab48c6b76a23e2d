"""The full-pipeline configuration: the bare echo Plane plus auth, authorization, Redis rate limit, audit.

Shared by the runner (``run.py``: per-run secrets, the readiness probe, cleanup), the server
(``servers/mcplane_server.py --layers ...``: the :class:`~mcplane.config.PlaneConfig`) and the
load generator (``loadgen.py --auth``: mints its bearer token with PyJWT at start).

Per run, :func:`pipeline_env` makes a random HS256 secret, a unique subject (so every Redis key
the run creates names it, and only those keys are deleted afterwards) and a temporary directory
for the audit files, and hands them to the child processes through the environment:

``MCPLANE_BENCH_JWT_SECRET``  the HS256 secret (never on a command line)
``MCPLANE_BENCH_SUBJECT``     the token's ``sub``: ``bench-<random hex>``
``MCPLANE_BENCH_AUDIT_DIR``   where each server writes ``audit-<pid>.jsonl``
``MCPLANE_BENCH_REDIS_URL``   Redis for the rate limiter (default ``redis://127.0.0.1:6379/0``)

Layers (``--layers`` of the server, comma separated):

``auth``       JWT HS256 (issuer, audience, ``exp`` checked), ``required: true``
``authz``      ``authorization: {default: deny, tools: {echo: {roles: [bench-caller]}}}``
``ratelimit``  ``rate_limit: {backend: redis, default: 1000000/second, scope: principal}``: never
               refuses, but every call runs the GCRA script on Redis (one round trip)
``ratelimit-memory``  the same limit on the in-process backend (isolates the Redis round trip)
``ratelimit-lease``   the Redis limit with a leased allowance, ``lease: {max: 64, ttl: 1s}``: calls are
               taken from Redis in batches and spent in process (one script call per lease)
``audit``      ``audit: {sink: file, fsync: <--fsync>}`` into the run's temporary directory
``audit-one``  the same with ``pending: false``: one record per call, its outcome
``guards``     ``guards: {tools: {"*": {refuse: [secrets, private_key], mask: [credentials]}}}``: every
               result scanned (it finds nothing in the echoed text)
``abac``       a CEL rule on ``echo`` (``size(args.text) <= 1000 || "<role>-admin" in principal.roles``):
               compiled once, evaluated per call (it always holds)
``audit-floor``      not mcplane's audit: :class:`FloorAudit` in the audit slot, the least any audit slot
               that writes a chained ``pending`` record before a call and its outcome record after must
               do (two hashed, chained lines of ≈ 650 bytes, one ``write`` each); a lower bound, not a log
``audit-floor-one``  the same with one record per call, written after it (the least of that shape)
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

ISSUER = "https://issuer.bench.mcplane.invalid"
AUDIENCE = "https://bench.mcplane.invalid/mcp"
ROLE = "bench-caller"
KID = "bench"
TOKEN_LIFETIME_S = 7 * 24 * 3600
RATE_LIMIT = "1000000/second"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
REDIS_KEY_PREFIX = "mcplane:"  # mcplane.backends.keys.DEFAULT_PREFIX: the config has no prefix option

ENV_SECRET = "MCPLANE_BENCH_JWT_SECRET"
ENV_SUBJECT = "MCPLANE_BENCH_SUBJECT"
ENV_AUDIT_DIR = "MCPLANE_BENCH_AUDIT_DIR"
ENV_REDIS_URL = "MCPLANE_BENCH_REDIS_URL"

LAYERS = (
    "auth",
    "authz",
    "ratelimit",
    "ratelimit-memory",
    "ratelimit-lease",
    "audit",
    "audit-one",
    "guards",
    "abac",
    "audit-floor",
    "audit-floor-one",
)
FLOOR_LAYERS = ("audit-floor", "audit-floor-one")
RATE_LIMIT_LAYERS = ("ratelimit", "ratelimit-memory", "ratelimit-lease")
LEASE = {"max": 64, "ttl": "1s"}
FSYNC_POLICIES = ("always", "interval", "never")


# ----------------------------------------------------------------------------- token (load side)
def mint_token(secret: str | None = None, subject: str | None = None) -> str:
    """A valid HS256 bearer token for this run (from the environment when not given)."""
    import jwt  # PyJWT; only the auth legs need it

    secret = secret if secret is not None else os.environ[ENV_SECRET]
    subject = subject if subject is not None else os.environ[ENV_SUBJECT]
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": subject,
        "roles": [ROLE],
        "iat": now,
        "nbf": now - 60,
        "exp": now + TOKEN_LIFETIME_S,
    }
    return jwt.encode(claims, secret, algorithm="HS256", headers={"kid": KID})


# ----------------------------------------------------------------------------- config (server side)
def parse_layers(value: str) -> tuple[str, ...]:
    layers = tuple(part.strip() for part in value.split(",") if part.strip())
    unknown = [layer for layer in layers if layer not in LAYERS]
    if unknown:
        raise ValueError(f"unknown layer(s) {unknown}; layers are {', '.join(LAYERS)}")
    if ("authz" in layers or "abac" in layers) and "auth" not in layers:
        raise ValueError("authz and abac need auth (the rules name the token's role)")
    if "abac" in layers and "authz" not in layers:
        raise ValueError("abac needs authz (its CEL rule sits on the authorization section)")
    if sum(layer in layers for layer in RATE_LIMIT_LAYERS) > 1:
        raise ValueError("choose one of ratelimit (redis), ratelimit-memory and ratelimit-lease")
    if sum(layer in layers for layer in ("audit", "audit-one", *FLOOR_LAYERS)) > 1:
        raise ValueError("choose one of audit, audit-one, audit-floor and audit-floor-one (they take the same slot)")
    return layers


def plane_config(layers: tuple[str, ...], *, fsync: str = "interval") -> Any:
    """The :class:`~mcplane.config.PlaneConfig` for ``layers`` (validated like ``mcplane.yaml``)."""
    from mcplane.config import PlaneConfig

    tree: dict[str, Any] = {}
    if "auth" in layers:
        tree["auth"] = {
            "required": True,
            "api_key_header": None,
            "jwt": {
                "issuer": ISSUER,
                "audience": AUDIENCE,
                "algorithms": ["HS256"],
                "keys": [{"kid": KID, "secret": os.environ[ENV_SECRET]}],
            },
        }
    if "authz" in layers:
        tree["authorization"] = {"default": "deny", "tools": {"echo": {"roles": [ROLE]}}}
    if "abac" in layers:
        require = f'size(args.text) <= 1000 || "{ROLE}-admin" in principal.roles'
        tree["authorization"]["rules"] = {"short_texts": {"tools": ["echo"], "require": require}}
    if "guards" in layers:
        tree["guards"] = {"tools": {"*": {"refuse": ["secrets", "private_key"], "mask": ["credentials"]}}}
    if any(layer in layers for layer in RATE_LIMIT_LAYERS):
        redis = "ratelimit-memory" not in layers
        rate_limit: dict[str, Any] = {
            "backend": "redis" if redis else "memory",
            "default": RATE_LIMIT,
            "scope": "principal",
            "fail_open": False,
        }
        if "ratelimit-lease" in layers:
            rate_limit["lease"] = LEASE
        tree["rate_limit"] = rate_limit
        if redis:
            from mcplane.secrets import Secret

            tree["redis_url"] = Secret(os.environ.get(ENV_REDIS_URL, DEFAULT_REDIS_URL))
    if "audit" in layers or "audit-one" in layers:
        audit_dir = Path(os.environ.get(ENV_AUDIT_DIR) or tempfile.gettempdir())
        tree["audit"] = {"sink": "file", "path": str(audit_dir / f"audit-{os.getpid()}.jsonl"), "fsync": fsync}
        if "audit-one" in layers:
            tree["audit"]["pending"] = False
    return PlaneConfig.model_validate(tree)


# ----------------------------------------------------------------------------- the audit floor (server side)
_FLOOR_USER_AGENT = "python-httpx/0.28.1"
"""A user agent of the load generator's length: the floor's records are as long as the real ones."""


class FloorAudit:
    """A lower bound of the audit slot's cost, for the bench only: **not an audit log**.

    What any audit slot must do at the least per call when it writes a ``pending`` record before
    the call and an outcome record after it (``records=2``), or one record after it
    (``records=1``), each chained by SHA-256 to the one before: hash the arguments and the result,
    make each record's line (the same members as mcplane's, of the same length, with fixed text
    where a real record reads the request), hash it with the previous hash and append it with one
    ``write``. Nothing else: no request facts (client IP, user agent, trace, session), no
    canonical encoding, bounding or escaping of names, no lock, lease, rotation, checkpoint,
    failure policy, error mapping or wall-clock time. A real audit slot of the same shape costs at
    least this; ``run.py``'s ``mcplane-floor`` variants put it in place of mcplane's to show what
    is left for the other layers.
    """

    def __init__(self, path: Path, *, records: int) -> None:
        if records not in (1, 2):
            raise ValueError("records is 1 or 2")
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._pending = records == 2
        self._prev = "0" * 64
        self._seq = 0

    def _append(self, text: str) -> None:
        self._seq += 1
        body = f'{text}"prev_hash":"{self._prev}","seq":{self._seq},"v":1'
        digest = hashlib.sha256(body.encode()).hexdigest()
        self._prev = digest
        os.write(self._fd, f'{body},"hash":"{digest}"}}\n'.encode())

    async def __call__(self, call: Any, call_next: Any) -> Any:
        context = call.context
        args = hashlib.sha256(orjson.dumps(call.arguments, option=orjson.OPT_SORT_KEYS)).hexdigest()
        shared = (
            f'{{"args_sha256":"{args}","call_id":"{self._seq:032x}","client_ip":"127.0.0.1",'
            f'"correlation_id":"{context.correlation_id}","kind":"{call.kind}","name":"{call.name}",'
            f'"session_id":"","subject":"{context.principal.subject}","tenant":null,"trace_id":"",'
            f'"user_agent":"{_FLOOR_USER_AGENT}","time":"2026-01-01T00:00:00.000Z",'
        )
        started = time.perf_counter()
        if self._pending:
            self._append(f'{shared}"duration_ms":null,"error_code":null,"result_sha256":"","status":"pending",')
        result = await call_next(call)
        texts = [getattr(block, "text", "") for block in getattr(result, "content", ())]
        digest = hashlib.sha256(orjson.dumps(texts)).hexdigest()
        duration = round((time.perf_counter() - started) * 1000, 3)
        self._append(f'{shared}"duration_ms":{duration},"error_code":null,"result_sha256":"{digest}","status":"ok",')
        return result


def install_floor(plane: Any, layers: tuple[str, ...]) -> None:
    """Put :class:`FloorAudit` in ``plane``'s audit slot if ``layers`` asks for it."""
    for layer in FLOOR_LAYERS:
        if layer in layers:
            audit_dir = Path(os.environ.get(ENV_AUDIT_DIR) or tempfile.gettempdir())
            records = 1 if layer == "audit-floor-one" else 2
            plane.pipeline.set("audit", FloorAudit(audit_dir / f"floor-{os.getpid()}.log", records=records))


# ----------------------------------------------------------------------------- per run (runner side)
@dataclass
class PipelineEnv:
    subject: str
    audit_dir: Path
    redis_url: str
    filesystem: str
    redis_keys_deleted: int = 0
    audit_records: int = 0
    audit_bytes: int = 0

    def token(self) -> str:
        return mint_token()

    def describe(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "audit_filesystem": self.filesystem,
            "redis_keys_deleted": self.redis_keys_deleted,
            "audit_records": self.audit_records,
            "audit_bytes": self.audit_bytes,
        }


def filesystem_of(path: Path) -> str:
    """The filesystem type holding ``path`` (longest mount point prefix in /proc/mounts)."""
    best, kind = "", "unknown"
    with contextlib.suppress(OSError):
        resolved = str(path.resolve())
        for line in Path("/proc/mounts").read_text().splitlines():
            fields = line.split()
            if len(fields) < 3:
                continue
            mount = fields[1]
            if (resolved == mount or resolved.startswith(mount.rstrip("/") + "/")) and len(mount) > len(best):
                best, kind = mount, fields[2]
    return kind


@contextlib.contextmanager
def pipeline_env(audit_parent: str | None = None) -> Iterator[PipelineEnv]:
    """Per-run secret, subject and audit directory in ``os.environ``; Redis keys and files removed after."""
    names = (ENV_SECRET, ENV_SUBJECT, ENV_AUDIT_DIR, ENV_REDIS_URL)
    saved = {name: os.environ.get(name) for name in names}
    audit_dir = Path(tempfile.mkdtemp(prefix="mcplane-bench-audit-", dir=audit_parent))
    env = PipelineEnv(
        subject=f"bench-{secrets.token_hex(8)}",
        audit_dir=audit_dir,
        redis_url=os.environ.get(ENV_REDIS_URL) or DEFAULT_REDIS_URL,
        filesystem=filesystem_of(audit_dir),
    )
    os.environ[ENV_SECRET] = secrets.token_urlsafe(48)
    os.environ[ENV_SUBJECT] = env.subject
    os.environ[ENV_AUDIT_DIR] = str(audit_dir)
    os.environ[ENV_REDIS_URL] = env.redis_url
    try:
        yield env
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        env.redis_keys_deleted = delete_redis_keys(env.redis_url, env.subject)
        for file in audit_dir.glob("*.jsonl"):
            with contextlib.suppress(OSError):
                data = file.read_bytes()
                env.audit_records += data.count(b"\n")
                env.audit_bytes += len(data)
        shutil.rmtree(audit_dir, ignore_errors=True)


def delete_redis_keys(url: str, subject: str) -> int:
    """Delete every key of this run (they all name its unique subject); the number deleted."""
    try:
        import redis
    except ImportError:
        return 0
    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    deleted = 0
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{REDIS_KEY_PREFIX}*{subject}*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                deleted += int(client.unlink(*batch))
                batch.clear()
        if batch:
            deleted += int(client.unlink(*batch))
    except redis.RedisError:
        return deleted
    finally:
        client.close()
    return deleted
