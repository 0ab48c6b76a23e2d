"""mcplane bench: ``tools/call`` of a trivial echo tool, mcplane vs the SDK vs FastMCP vs a raw floor.

    python bench/run.py              # full run (~5 s per cell after a 1 s warm-up)
    python bench/run.py --quick      # ~1 s per cell
    python bench/run.py --legs http-2026 --servers mcplane,sdk-best --duration 10

Each server runs as its own process pinned to one CPU; the load generator (``loadgen.py``) is
another process pinned to another. Writes ``bench/RESULTS.md`` (overwritten, also printed) and
the raw numbers to ``bench/out/``. See ``bench/README.md`` for how to read them.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime as dt
import http.client
import importlib.metadata
import json
import os
import platform
import queue
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import fullpipe  # noqa: E402  (next to this file)

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

    @property
    def layered(self) -> bool:
        return any("--layers" in flags for flags in self.args.values())


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
    "0.7\u00d7 goal is not met: what is left (pydantic `Context` attribute reads, about 35 µs per call over all "
    "layers; redis-py's RESP parsing in Python; two hashed audit records per call) is listed in `bench/PROFILE.md`."
)
VARIANT_BY_KEY = {v.key: v for v in VARIANTS}
TARGET_RATIO = 1.5
NOISY = 0.10
"""A cell is flagged noisy when other processes used more than this share of a CPU during its window."""


# ----------------------------------------------------------------------------- processes
_live: dict[int, subprocess.Popen[Any]] = {}


def _preexec(cpu: int | None) -> Callable[[], None]:
    def setup() -> None:
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the runner

    return setup


def _stop(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    _live.pop(proc.pid, None)


def _stop_all() -> None:
    for proc in list(_live.values()):
        _stop(proc)


class ServerError(RuntimeError):
    pass


@contextlib.contextmanager
def http_server(
    variant: Variant,
    leg: str,
    cpu: int | None,
    log_path: Path,
    timeout: float,
    prefix: tuple[str, ...] = (),
    stop_signal: int = signal.SIGTERM,
) -> Iterator[tuple[int, int]]:
    """Start the variant's HTTP server, wait until a real tools/call answers, yield (pid, port).

    ``prefix`` goes between the interpreter and the script (``-m cProfile -o FILE`` when profiling;
    then stop with SIGINT: uvicorn re-raises SIGTERM after shutdown, which kills cProfile unsaved).
    """
    cmd = [PYTHON, *prefix, str(SERVERS / variant.script), "--transport", "http", *variant.args[leg]]
    with log_path.open("ab") as log:
        log.write(f"\n$ {' '.join(cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, preexec_fn=_preexec(cpu))
    _live[proc.pid] = proc
    try:
        lines: queue.Queue[bytes] = queue.Queue()

        def pump() -> None:  # first line to the runner, the rest to the log (never let the pipe fill)
            assert proc.stdout is not None
            with log_path.open("ab") as sink:
                for line in proc.stdout:
                    lines.put(line)
                    sink.write(line)
                    sink.flush()
            lines.put(b"")

        threading.Thread(target=pump, daemon=True).start()
        try:
            first = lines.get(timeout=timeout)
        except queue.Empty:
            raise ServerError(f"{variant.key}: no LISTENING line within {timeout:g} s") from None
        if not first.startswith(b"LISTENING "):
            raise ServerError(f"{variant.key}: exited or said {first!r}")
        port = int(first.split()[1])
        _wait_ready(proc, port, timeout, auth=variant.auth)
        yield proc.pid, port
    finally:
        _stop(proc, stop_signal)


def _wait_ready(proc: subprocess.Popen[Any], port: int, timeout: float, *, auth: bool = False) -> None:
    """Poll a real 2026-07-28 tools/call until it echoes, under ``timeout`` (no fixed sleeps)."""
    deadline = _now() + timeout
    body = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {
                "name": "echo",
                "arguments": {"text": "ready"},
                "_meta": {
                    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                    "io.modelcontextprotocol/clientCapabilities": {},
                },
            },
        }
    )
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2026-07-28",
        "Mcp-Method": "tools/call",
        "Mcp-Name": "echo",
    }
    if auth:
        headers["Authorization"] = f"Bearer {fullpipe.mint_token()}"
    last = "no answer"
    backoff = 0.02
    while _now() < deadline:
        if proc.poll() is not None:
            raise ServerError(f"server exited with {proc.returncode} before it was ready")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=max(0.5, deadline - _now()))
        try:
            conn.request("POST", "/mcp", body, headers)
            response = conn.getresponse()
            text = response.read()
            if response.status == 200 and b'"ready"' in text:
                return
            last = f"HTTP {response.status}: {text[:200]!r}"
        except OSError as exc:
            last = f"{type(exc).__name__}: {exc}"
        finally:
            conn.close()
        # Waiting on the process doubles as the back-off and notices an early exit at once.
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(backoff)
        backoff = min(backoff * 2, 0.25)
    raise ServerError(f"server not ready within {timeout:g} s: {last}")


def _now() -> float:
    return time.monotonic()


def run_loadgen(
    args: argparse.Namespace,
    leg: str,
    concurrency: int,
    *,
    port: int | None = None,
    server_pid: int | None = None,
    server_cmd: list[str] | None = None,
    log_path: Path,
    pid_file: Path | None = None,
    wait: bool = True,
    auth: bool = False,
) -> Any:
    """Run one cell's load generator and return its JSON result (``wait=False``: the Popen)."""
    cmd = [
        PYTHON,
        str(BENCH / "loadgen.py"),
        "--leg",
        leg,
        "--concurrency",
        str(concurrency),
        "--warmup",
        str(args.warmup),
        "--duration",
        str(args.duration),
        "--ready-timeout",
        str(args.ready_timeout),
    ]
    if args.load_cpu is not None:
        cmd += ["--load-cpu", str(args.load_cpu)]
    if auth:
        cmd.append("--auth")
    if port is not None:
        cmd += ["--port", str(port), "--server-pid", str(server_pid)]
    if args.server_cpu is not None:
        cmd += ["--server-cpu", str(args.server_cpu)]
    if server_cmd is not None:
        cmd += ["--server-log", str(log_path)]
        if pid_file is not None:
            cmd += ["--pid-file", str(pid_file)]
        cmd += ["--", *server_cmd]
    limit = args.warmup + args.duration + args.ready_timeout + 60
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_preexec(args.load_cpu), text=True
    )
    _live[proc.pid] = proc
    if not wait:
        return proc
    return finish_loadgen(proc, limit)


def finish_loadgen(proc: subprocess.Popen[str], limit: float) -> dict[str, Any]:
    try:
        out, err = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        _stop(proc)
        return {"failed": f"load generator did not finish within {limit:g} s"}
    finally:
        _live.pop(proc.pid, None)
    if proc.returncode != 0 or not out.strip():
        tail = " | ".join(err.strip().splitlines()[-3:])
        return {"failed": f"load generator exited {proc.returncode}: {tail}"}
    return json.loads(out.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- the matrix
def run_matrix(
    args: argparse.Namespace,
    out_dir: Path,
    stamp: str,
    only: set[tuple[str, str]] | None = None,
    first_round: int = 1,
) -> list[dict[str, Any]]:
    """Every (leg, server) of the arguments (``only``: just these pairs), ``args.repeat`` rounds."""
    cells: list[dict[str, Any]] = []
    log_dir = out_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    plan = [(leg, v) for leg in args.legs for v in VARIANTS if v.key in args.servers and leg in v.args]
    if only is not None:
        plan = [(leg, v) for leg, v in plan if (leg, v.key) in only]
    total = len(plan) * len(args.concurrency) * args.repeat
    done = 0
    for round_no in range(first_round, first_round + args.repeat):
        for leg, variant in plan:
            log_path = log_dir / f"{stamp}-{leg}-{variant.key}.log"
            base = {"leg": leg, "server": variant.key, "role": variant.role, "config": variant.config.get(leg, "")}
            results: list[tuple[int, dict[str, Any]]] = []
            try:
                if leg in HTTP_LEGS:
                    with http_server(variant, leg, args.server_cpu, log_path, args.ready_timeout) as (pid, port):
                        for conc in args.concurrency:
                            _progress(done + len(results) + 1, total, leg, variant.key, conc)
                            results.append(
                                (
                                    conc,
                                    run_loadgen(
                                        args, leg, conc, port=port, server_pid=pid, log_path=log_path, auth=variant.auth
                                    ),
                                )
                            )
                else:
                    server_cmd = [PYTHON, str(SERVERS / variant.script), "--transport", "stdio", *variant.args[leg]]
                    for conc in args.concurrency:
                        _progress(done + len(results) + 1, total, leg, variant.key, conc)
                        results.append((conc, run_loadgen(args, leg, conc, server_cmd=server_cmd, log_path=log_path)))
            except ServerError as exc:
                failed = {"failed": f"{exc} (log: {log_path.relative_to(BENCH)})"}
                results += [(conc, failed) for conc in args.concurrency[len(results) :]]
            for conc, result in results:
                cells.append({**base, "concurrency": conc, "round": round_no, **result})
                _report_cell(cells[-1])
            done += len(args.concurrency)
    return cells


def _progress(i: int, total: int, leg: str, server: str, conc: int) -> None:
    print(f"[{i}/{total}] {leg:<10} {server:<13} c={conc:<3}", end=" ", file=sys.stderr, flush=True)


def _report_cell(cell: dict[str, Any]) -> None:
    if "failed" in cell:
        print(f"FAILED: {cell['failed']}", file=sys.stderr)
        return
    flag = f"  ERRORS={cell['errors']} e.g. {cell['error_samples'][:1]}" if cell["errors"] else ""
    print(
        f"{cell['calls_per_s']:>9.0f} calls/s  {_fmt(cell['calls_per_cpu_s'], 0):>7} calls/CPU-s  "
        f"p50 {cell['p50_ms']:.2f} ms  p99 {cell['p99_ms']:.2f} ms  "
        f"srv {_pct(cell['server_cpu_util'])} load {_pct(cell['load_cpu_util'])} "
        f"other {_pct(cell.get('foreign_cpu_util'))}{flag}",
        file=sys.stderr,
    )


def aggregate(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (leg, server, concurrency): the median by calls/s of its quiet rounds (else of all)."""
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for cell in cells:
        groups.setdefault((cell["leg"], cell["server"], cell["concurrency"]), []).append(cell)
    rows = []
    for group in groups.values():
        ok = [c for c in group if "failed" not in c]
        if not ok:
            rows.append(group[0])
            continue
        # Prefer the rounds the rest of the machine left alone; the median of those.
        quiet = [c for c in ok if not _noisy(c)] or ok
        quiet.sort(key=lambda c: c["calls_per_s"])
        row = dict(quiet[(len(quiet) - 1) // 2])
        row["quiet_rounds"] = sum(1 for c in ok if not _noisy(c))
        row["rounds"] = len(group)
        row["errors"] = sum(c.get("errors", 0) for c in ok)
        row["failed_rounds"] = len(group) - len(ok)
        if len(ok) > 1:
            row["calls_per_s_spread"] = [min(c["calls_per_s"] for c in ok), max(c["calls_per_s"] for c in ok)]
            row["calls_per_s_stdev"] = statistics.pstdev(c["calls_per_s"] for c in ok)
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- reporting
def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for dist in (
        "mcplane",
        "mcp",
        "mcp-types",
        "fastmcp",
        "uvicorn",
        "starlette",
        "uvloop",
        "httptools",
        "orjson",
        "pydantic",
    ):
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[dist] = "not installed"
    return found


def source_state() -> str:
    """The mcplane checkout measured: commit, and whether src/ differs from it (read-only git calls)."""
    root = BENCH.parent

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", "--no-optional-locks", "-C", str(root), *args], capture_output=True, text=True, check=False
        )

    try:
        head = git("rev-parse", "--short", "HEAD")
        if head.returncode != 0:
            return "unknown (not a git checkout)"
        dirty = git("diff", "--quiet", "HEAD", "--", "src").returncode != 0
        untracked = bool(git("ls-files", "--others", "--exclude-standard", "--", "src").stdout.strip())
    except OSError:
        return "unknown (no git)"
    state = " + uncommitted changes in src/" if dirty or untracked else ""
    return f"commit {head.stdout.strip()}{state}"


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _fmt(value: float | None, digits: int = 2) -> str:
    if value is None or value != value:  # None or NaN
        return "n/a"
    return f"{value:,.{digits}f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


def _ratio(a: float | None, b: float | None) -> float | None:
    if not a or not b:
        return None
    return a / b


def _clean(row: dict[str, Any] | None) -> bool:
    return row is not None and "failed" not in row and row.get("errors", 0) == 0


def _noisy(row: dict[str, Any] | None) -> bool:
    return row is not None and (row.get("foreign_cpu_util") or 0.0) > NOISY


def ratios(rows: list[dict[str, Any]], legs: list[str], concurrency: list[int]) -> list[dict[str, Any]]:
    out = []
    for leg in legs:
        for conc in concurrency:
            here = [r for r in rows if r["leg"] == leg and r["concurrency"] == conc and "failed" not in r]

            def by_role(role: str, rows_here: list[dict[str, Any]] = here) -> list[dict[str, Any]]:
                return [r for r in rows_here if r["role"] == role]

            mine = next(iter(by_role("mcplane")), None)
            if mine is None:
                continue
            entry: dict[str, Any] = {"leg": leg, "concurrency": conc, "mcplane_clean": _clean(mine)}
            for role in ("sdk", "fastmcp", "floor"):
                candidates = by_role(role)
                if not candidates:
                    continue
                best = max(candidates, key=lambda r: r["calls_per_s"])
                best_eff = max(candidates, key=lambda r: r.get("calls_per_cpu_s") or 0)
                entry[role] = {
                    "server": best["server"],
                    "calls_per_s": _ratio(mine["calls_per_s"], best["calls_per_s"]),
                    "calls_per_cpu_s": _ratio(mine.get("calls_per_cpu_s"), best_eff.get("calls_per_cpu_s")),
                    "clean": _clean(best) and _clean(best_eff),
                    "noisy": _noisy(best) or _noisy(best_eff),
                }
            if not any(role in entry for role in ("sdk", "fastmcp", "floor")):
                continue  # nothing to compare with in this run (e.g. --sweep)
            entry["noisy"] = _noisy(mine) or any(entry[r]["noisy"] for r in ("sdk", "fastmcp", "floor") if r in entry)
            out.append(entry)
    return out


def _row(rows: list[dict[str, Any]], leg: str, server: str, conc: int) -> dict[str, Any] | None:
    for r in rows:
        if r["leg"] == leg and r["server"] == server and r["concurrency"] == conc and "failed" not in r:
            return r
    return None


def _cpu_us(row: dict[str, Any] | None) -> float | None:
    """Server CPU per call in µs (calls/CPU-s inverted)."""
    eff = row.get("calls_per_cpu_s") if row is not None else None
    return 1e6 / eff if eff else None


def _delta(a: float | None, b: float | None) -> str:
    return "n/a" if a is None or b is None else f"{a - b:+,.0f}"


def full_ratios(rows: list[dict[str, Any]], legs: list[str], concurrency: list[int]) -> list[dict[str, Any]]:
    """Each full-pipeline variant ÷ bare mcplane, per leg and concurrency (same run)."""
    out = []
    for leg in legs:
        for conc in concurrency:
            bare = _row(rows, leg, "mcplane", conc)
            if bare is None:
                continue
            for variant in VARIANTS:
                if variant.role != "full":
                    continue
                full = _row(rows, leg, variant.key, conc)
                if full is None:
                    continue
                out.append(
                    {
                        "leg": leg,
                        "concurrency": conc,
                        "server": variant.key,
                        "calls_per_s": _ratio(full["calls_per_s"], bare["calls_per_s"]),
                        "calls_per_cpu_s": _ratio(full.get("calls_per_cpu_s"), bare.get("calls_per_cpu_s")),
                        "bare_cpu_us": _cpu_us(bare),
                        "full_cpu_us": _cpu_us(full),
                        "bare_p50_ms": bare["p50_ms"],
                        "full_p50_ms": full["p50_ms"],
                        "clean": _clean(bare) and _clean(full),
                        "noisy": _noisy(bare) or _noisy(full),
                    }
                )
    return out


def render_pipeline(meta: dict[str, Any], rows: list[dict[str, Any]], full_rows: list[dict[str, Any]]) -> list[str]:
    lines: list[str] = []
    if full_rows:
        lines += [
            "## Full pipeline (mcplane-full ÷ bare mcplane, same run)",
            "",
            "`mcplane-full` = the same echo `Plane` plus JWT HS256 auth (every request carries a valid "
            "`Authorization: Bearer` token), authorization (a role rule for `echo`, default deny), a rate limit "
            "on Redis that never triggers (`1000000/second`, scope principal: one GCRA script round trip per call) "
            "and audit to a JSONL file with `fsync: interval` (at most one fsync per second: a machine crash can lose "
            "the last second of records, a process crash loses nothing). `mcplane-full-fsync` is the same with "
            f"`fsync: always` (one fsync per record, i.e. two per call). Target ≥ {FULL_TARGET}\u00d7. CPU µs/call = "
            "server CPU per answered call (calls/CPU-s inverted).",
            "",
            "| leg | conc | server | ÷ bare calls/s | ÷ bare calls/CPU-s | bare CPU µs/call | full CPU µs/call "
            "| added µs/call | p50 bare → full ms |",
            "|---|--:|---|--:|--:|--:|--:|--:|--:|",
        ]
        for e in full_rows:
            hit = ""
            if e["calls_per_s"] is not None and e["server"] == "mcplane-full":
                hit = " ✓" if e["calls_per_s"] >= FULL_TARGET else " ✗"
            flag = "" if e["clean"] else " ⚠"
            if e["noisy"]:
                flag += " (noisy)"
            lines.append(
                f"| {e['leg']}{flag} | {e['concurrency']} | {e['server']} | **{_x(e['calls_per_s'])}**{hit} "
                f"| {_x(e['calls_per_cpu_s'])} | {_fmt(e['bare_cpu_us'], 0)} | {_fmt(e['full_cpu_us'], 0)} "
                f"| {_delta(e['full_cpu_us'], e['bare_cpu_us'])} | {_fmt(e['bare_p50_ms'], 3)} → "
                f"{_fmt(e['full_p50_ms'], 3)} |"
            )
        pipeline = meta.get("pipeline") or {}
        if pipeline:
            lines += [
                "",
                f"Audit files on a `{pipeline.get('audit_filesystem')}` filesystem "
                f"({pipeline.get('audit_records', 0):,} records, {pipeline.get('audit_bytes', 0) / 1e6:,.1f} MB "
                f"written in the run, then deleted); Redis keys of the run deleted afterwards: "
                f"{pipeline.get('redis_keys_deleted', 0)} (GCRA keys expire within milliseconds at this limit).",
            ]
        lines += ["", PIPELINE_NOTES, ""]
    ordered = [VARIANT_BY_KEY[key] for key in SWEEP] + [v for v in VARIANTS if v.key not in SWEEP]
    sweep = [v for v in ordered if v.base is not None and any(r["server"] == v.key for r in rows)]
    if any(v.role == "layer" for v in sweep):
        lines += [
            "## Layer sweep (one layer at a time)",
            "",
            "Each row adds one layer to the row named in *vs*; Δ = this row minus that row, in server CPU µs "
            "per call (calls/CPU-s inverted: the cost the layer adds to the server) and in p50 latency "
            "(what a caller waits, Redis round trip included). At concurrency 32 the server is CPU-bound, so the "
            "CPU column is the layer's cost; differences of a few µs are within run-to-run noise.",
            "",
            "| leg | conc | server | adds | vs | calls/s | CPU µs/call | Δ CPU µs/call | p50 ms | Δ p50 µs |",
            "|---|--:|---|---|---|--:|--:|--:|--:|--:|",
        ]
        for leg in meta["legs"]:
            for conc in meta["concurrency"]:
                bare = _row(rows, leg, "mcplane", conc)
                if bare is not None:
                    lines.append(
                        f"| {leg}{' ⚠' if _noisy(bare) else ''} | {conc} | mcplane | (bare) | | "
                        f"{_fmt(bare['calls_per_s'], 0)} | {_fmt(_cpu_us(bare), 0)} | | {_fmt(bare['p50_ms'], 3)} | |"
                    )
                for v in sweep:
                    row = _row(rows, leg, v.key, conc)
                    if row is None:
                        continue
                    base = _row(rows, leg, v.base or "", conc)
                    p50_delta = _delta(row["p50_ms"] * 1000, base["p50_ms"] * 1000) if base is not None else "n/a"
                    noisy = " ⚠" if _noisy(row) or _noisy(base) else ""
                    lines.append(
                        f"| {leg}{noisy} | {conc} | {v.key} | {v.adds} | {v.base} | {_fmt(row['calls_per_s'], 0)} "
                        f"| {_fmt(_cpu_us(row), 0)} | {_delta(_cpu_us(row), _cpu_us(base))} "
                        f"| {_fmt(row['p50_ms'], 3)} | {p50_delta} |"
                    )
        lines.append("")
    return lines


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}\u00d7"  # multiplication sign


def render(
    meta: dict[str, Any],
    rows: list[dict[str, Any]],
    ratio_rows: list[dict[str, Any]],
    full_rows: list[dict[str, Any]] | None = None,
) -> str:
    v = meta["versions"]
    lines = [
        "# mcplane bench results",
        "",
        f"`tools/call` of a trivial `echo` tool (`text: str` → same text). Generated by `{meta['command']}` "
        f"on {meta['date']}.",
        "",
        f"- **Machine**: {meta['cpu_count']} CPUs ({meta['cpu_model']}), Linux {platform.release()}; "
        f"server pinned to CPU {meta['server_cpu']}, load generator to CPU {meta['load_cpu']}.",
        f"- **Versions**: python {v['python']}, mcp {v['mcp']} (mcp-types {v['mcp-types']}), fastmcp {v['fastmcp']}, "
        f"mcplane {v['mcplane']}, uvicorn {v['uvicorn']}, starlette {v['starlette']}, uvloop {v['uvloop']}, "
        f"httptools {v['httptools']}, orjson {v['orjson']}, pydantic {v['pydantic']}; mcplane source: "
        f"{meta['source']}.",
        f"- **Method**: {meta['warmup']:g} s warm-up then a {meta['duration']:g} s measured window per cell, "
        f"{meta['repeat']} round(s) (per cell the median of its quiet rounds); HTTP servers under uvicorn "
        "with uvloop + httptools at log level "
        "warning; every response checked (HTTP 200, id, echoed text, no error).",
        *(
            [
                "- **Re-measured**: "
                + "; ".join(
                    f"{len(r['cells'])} leg/server pair(s) with no quiet round measured again at {r['date']} "
                    f"({', '.join('/'.join(c) for c in r['cells'])})"
                    for r in meta["reruns"]
                )
                + " (`--rerun-noisy`); their extra rounds count like the others."
            ]
            if meta.get("reruns")
            else []
        ),
        "- **Columns**: calls/s = answered calls in the window ÷ wall time; calls/CPU-s = the same calls ÷ the "
        "server process's CPU seconds (utime+stime) over the window — the efficiency number that survives a slow "
        "or saturated load generator; srv/load = CPU use of the server / load generator over the window (≈100% "
        "srv: server-bound; ≈100% load: the generator is the limit, trust calls/CPU-s); other procs = CPU the rest of "
        "the machine took from the two pinned CPUs during the window (100% = one whole CPU; "
        f"⚠ over {NOISY:.0%}: that cell and its ratios "
        "are disturbed; re-run on a quiet machine or with `--repeat`).",
        "",
    ]
    problems = [r for r in rows if not _clean(r)]
    if problems:
        lines.append("**⚠ Flagged cells (errors or failures — their numbers are not trustworthy):**")
        lines.append("")
        for r in problems:
            what = r.get("failed") or f"{r['errors']} errors, e.g. {r['error_samples'][:2]}"
            lines.append(f"- {r['leg']} / {r['server']} / c={r['concurrency']}: {what}")
        lines.append("")
    else:
        lines += ["All cells error-free.", ""]
    noisy = [r for r in rows if _noisy(r)]
    if noisy:
        lines += [
            f"**⚠ {len(noisy)} of {len(rows)} cells ran while other processes took more than {NOISY:.0%} of the "
            "pinned CPUs** (marked below); their absolute numbers, and the ratios built on them, are disturbed.",
            "",
        ]

    if ratio_rows:
        lines += [
            "## Ratios (mcplane ÷ reference, same run)",
            "",
            "SDK best = the faster of the SDK's default and best configurations in that cell "
            f"(target ≥ {TARGET_RATIO}\u00d7); calls/CPU-s ratios compare against the most efficient reference "
            "configuration.",
            "",
            "| leg | conc | ÷ SDK best calls/s | ÷ SDK best calls/CPU-s | SDK best is | ÷ FastMCP calls/s "
            "| ÷ FastMCP calls/CPU-s | ÷ floor calls/s | ÷ floor calls/CPU-s |",
            "|---|--:|--:|--:|---|--:|--:|--:|--:|",
        ]
        for e in ratio_rows:
            sdk, fast, floor = e.get("sdk", {}), e.get("fastmcp", {}), e.get("floor", {})
            hit = ""
            if sdk.get("calls_per_s") is not None:
                hit = " ✓" if sdk["calls_per_s"] >= TARGET_RATIO else " ✗"
            flag = "" if e["mcplane_clean"] and all(r.get("clean", True) for r in (sdk, fast, floor)) else " ⚠"
            if e.get("noisy"):
                flag += " (noisy)"
            lines.append(
                f"| {e['leg']}{flag} | {e['concurrency']} | **{_x(sdk.get('calls_per_s'))}**{hit} "
                f"| {_x(sdk.get('calls_per_cpu_s'))} | {sdk.get('server', 'n/a')} "
                f"| {_x(fast.get('calls_per_s'))} | {_x(fast.get('calls_per_cpu_s'))} "
                f"| {_x(floor.get('calls_per_s'))} | {_x(floor.get('calls_per_cpu_s'))} |"
            )
        lines.append("")
    lines += render_pipeline(meta, rows, full_rows or [])
    order = {v.key: i for i, v in enumerate(VARIANTS)}
    for leg in meta["legs"]:
        leg_rows = sorted((r for r in rows if r["leg"] == leg), key=lambda r: (order[r["server"]], r["concurrency"]))
        if not leg_rows:
            continue
        lines += [
            f"## {leg}: {LEGS[leg]}",
            "",
            "| server | conc | calls/s | calls/CPU-s | p50 ms | p99 ms | srv CPU | load CPU | other procs | errors "
            "| configuration |",
            "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
        ]
        for r in leg_rows:
            if "failed" in r:
                lines.append(
                    f"| {r['server']} | {r['concurrency']} | FAILED | | | | | | | ⚠ | {r['config']} — {r['failed']} |"
                )
                continue
            errors = f"**{r['errors']}** ⚠" if r["errors"] else "0"
            lines.append(
                f"| {r['server']} | {r['concurrency']} | {_fmt(r['calls_per_s'], 0)} | {_fmt(r['calls_per_cpu_s'], 0)} "
                f"| {_fmt(r['p50_ms'], 3)} | {_fmt(r['p99_ms'], 3)} | {_pct(r['server_cpu_util'])} "
                f"| {_pct(r['load_cpu_util'])} | {_pct(r.get('foreign_cpu_util'))}{' ⚠' if _noisy(r) else ''} "
                f"| {errors} | {r['config']} |"
            )
        lines.append("")
    lines += [
        "Absolute numbers depend on the machine and whatever else runs on it; compare servers only within one run. "
        "See `bench/README.md`.",
        "",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Benchmark tools/call: mcplane vs the MCP SDK vs FastMCP vs a floor.")
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per cell (default 5)")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds before each window (default 1)")
    parser.add_argument("--quick", action="store_true", help="1 s windows after 0.5 s warm-up")
    parser.add_argument("--legs", default=",".join(DEFAULT_LEGS), help=f"comma list of {', '.join(LEGS)}")
    parser.add_argument(
        "--servers", default=",".join(v.key for v in VARIANTS if v.default), help="comma list of server keys"
    )
    parser.add_argument(
        "--sweep",
        action="store_true",
        help="the layer sweep: bare mcplane, then one pipeline layer at a time, on the HTTP legs "
        f"(servers {','.join(SWEEP)}; --legs defaults to the HTTP legs)",
    )
    parser.add_argument(
        "--audit-dir", default=None, help="parent of the run's temporary audit directory (default: the temp dir)"
    )
    parser.add_argument(
        "--render",
        metavar="JSON",
        help="measure nothing: re-render a run's raw JSON (bench/out/results-*.json) into --results",
    )
    parser.add_argument(
        "--rerun-noisy",
        metavar="JSON",
        help="take a run's raw JSON and measure again (--repeat more rounds) every leg/server with a cell "
        "that had no quiet round or failed; the extra rounds join that run's cells (its settings are reused)",
    )
    parser.add_argument("--concurrency", default="1,32", help="comma list (default 1,32)")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of the whole matrix; the median is reported")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--load-cpu", type=int, default=1)
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument("--ready-timeout", type=float, default=60.0, help="seconds a server may take to get ready")
    parser.add_argument("--results", default=str(BENCH / "RESULTS.md"), help="markdown output (overwritten)")
    parser.add_argument("--out-dir", default=str(BENCH / "out"), help="raw JSON and server logs")
    args = parser.parse_args(argv)
    if args.sweep:
        if "--servers" not in (argv if argv is not None else sys.argv[1:]):
            args.servers = ",".join(SWEEP)
        if "--legs" not in (argv if argv is not None else sys.argv[1:]):
            args.legs = "http-2026,http-2025"
    if args.quick:
        args.duration, args.warmup = 1.0, 0.5
    args.legs = [leg for leg in args.legs.split(",") if leg]
    args.servers = [s for s in args.servers.split(",") if s]
    args.concurrency = [int(c) for c in args.concurrency.split(",") if c]
    for leg in args.legs:
        if leg not in LEGS:
            parser.error(f"unknown leg {leg!r}; legs are {', '.join(LEGS)}")
    for server in args.servers:
        if server not in VARIANT_BY_KEY:
            parser.error(f"unknown server {server!r}; servers are {', '.join(VARIANT_BY_KEY)}")
    cpus = sorted(os.sched_getaffinity(0))
    if args.no_pin or len(cpus) < 2:
        if not args.no_pin:
            print("warning: fewer than 2 CPUs available; not pinning", file=sys.stderr)
        args.server_cpu = args.load_cpu = None
    elif args.server_cpu not in cpus or args.load_cpu not in cpus or args.server_cpu == args.load_cpu:
        parser.error(f"--server-cpu and --load-cpu must be two different CPUs of {cpus}")
    return args


def report(meta: dict[str, Any], cells: list[dict[str, Any]]) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    """The markdown report, the raw record and the aggregated rows of one run's cells."""
    rows = aggregate(cells)
    ratio_rows = ratios(rows, meta["legs"], meta["concurrency"])
    full_rows = full_ratios(rows, meta["legs"], meta["concurrency"])
    raw = {"meta": meta, "cells": cells, "rows": rows, "ratios": ratio_rows, "full_ratios": full_rows}
    return render(meta, rows, ratio_rows, full_rows), raw, rows


def rerun_noisy(args: argparse.Namespace, source: Path) -> int:
    """More rounds for the disturbed cells of a recorded run, added to its cells, then the report again."""
    recorded = json.loads(source.read_text())
    meta, cells = recorded["meta"], recorded["cells"]
    rows = aggregate(cells)
    redo = {(r["leg"], r["server"]) for r in rows if "failed" in r or not r.get("quiet_rounds", 1)}
    if not redo:
        print("no noisy or failed cells: nothing to measure", file=sys.stderr)
    else:
        print(f"measuring again: {', '.join(f'{leg}/{server}' for leg, server in sorted(redo))}", file=sys.stderr)
        for key in ("legs", "servers", "concurrency", "duration", "warmup"):
            setattr(args, key, meta[key])
        out_dir = Path(args.out_dir)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        first = max(c.get("round", 1) for c in cells) + 1
        layered = any(VARIANT_BY_KEY[server].layered for _, server in redo)
        with fullpipe.pipeline_env(args.audit_dir) if layered else contextlib.nullcontext():
            try:
                cells = cells + run_matrix(args, out_dir, stamp, only=redo, first_round=first)
            finally:
                _stop_all()
        meta = {**meta, "reruns": [*meta.get("reruns", []), {"date": stamp, "cells": sorted(map(list, redo))}]}
        text, raw, rows = report(meta, cells)
        (out_dir / f"results-{stamp}.json").write_text(json.dumps(raw, indent=2))
        (out_dir / "latest.json").write_text(json.dumps(raw, indent=2))
        Path(args.results).write_text(text)
        print(text)
    return 1 if any(not _clean(r) for r in rows) else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render:
        recorded = json.loads(Path(args.render).read_text())
        text, _, rows = report(recorded["meta"], recorded["cells"])
        Path(args.results).write_text(text)
        print(text)
        return 1 if any(not _clean(r) for r in rows) else 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.rerun_noisy:
        return rerun_noisy(args, Path(args.rerun_noisy))
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    command = "python bench/run.py" + ("".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:])))
    meta = {
        "command": command,
        "date": now.strftime("%Y-%m-%d %H:%M UTC"),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "server_cpu": args.server_cpu if args.server_cpu is not None else "(unpinned)",
        "load_cpu": args.load_cpu if args.load_cpu is not None else "(unpinned)",
        "versions": versions(),
        "source": source_state(),
        "duration": args.duration,
        "warmup": args.warmup,
        "repeat": args.repeat,
        "legs": args.legs,
        "servers": args.servers,
        "concurrency": args.concurrency,
    }
    layered = any(VARIANT_BY_KEY[key].layered for key in args.servers)
    try:
        with fullpipe.pipeline_env(args.audit_dir) if layered else contextlib.nullcontext() as env:
            try:
                cells = run_matrix(args, out_dir, stamp)
            finally:
                _stop_all()
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    if env is not None:
        meta["pipeline"] = env.describe()
    text, raw, rows = report(meta, cells)
    (out_dir / f"results-{stamp}.json").write_text(json.dumps(raw, indent=2))
    (out_dir / "latest.json").write_text(json.dumps(raw, indent=2))
    Path(args.results).write_text(text)
    print(text)
    return 1 if any(not _clean(r) for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
