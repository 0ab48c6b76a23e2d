"""Profile one server's ``tools/call`` hot path under the bench load.

    python bench/profiler.py --server mcplane --leg http-2026             # pyinstrument, in-process
    python bench/profiler.py --server mcplane --leg stdio --tool py-spy   # py-spy, from outside
    python bench/profiler.py --server mcplane --leg stdio --tool cprofile # call counts per request

The load is ``loadgen.py`` driving the server exactly as ``run.py`` does. Three lenses:

- ``pyinstrument`` (default; ``pip install pyinstrument``): samples inside the server process
  (async mode off, so it shows where the CPU goes, not what is awaited), complete stacks, only
  during the measured window. Its per-call hook slows the server ~3x and inflates many-small-call
  code relative to C code.
- ``py-spy`` (``pip install py-spy``): samples from outside, from the load generator's CPU. By
  default it pauses the server per sample, and those stops land at syscall returns, which
  over-weights code next to a syscall (``asyncio.get_running_loop`` calls ``getpid()``);
  ``--nonblocking`` avoids that bias but tears many stacks (inclusive shares then understate).
- ``cprofile``: the server under ``python -m cProfile``; slow, but its call counts per request
  show what runs how often.

Each prints a summary (time by component, top self and inclusive costs) and saves the raw data
(collapsed stacks, pstats, the pyinstrument session) under ``bench/out/``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pstats
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as bench  # the runner's server management and load generator driver

# Where a sample's innermost Python frame lives decides its component. Order matters: first match wins.
COMPONENTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("mcplane", ("mcplane/",)),
    ("SDK otel hooks", ("mcp/server/_otel", "mcp/shared/_otel", "opentelemetry/")),
    (
        "SDK HTTP transport (modern entry, session transport, header ladder)",
        (
            "mcp/server/_streamable_http_modern",
            "mcp/server/streamable_http",
            "mcp/server/transport_security",
            "mcp/shared/inbound",
        ),
    ),
    ("SDK stdio transport", ("mcp/server/stdio",)),
    (
        "SDK dispatcher / runner / request context",
        (
            "mcp/server/runner",
            "mcp/shared/jsonrpc_dispatcher",
            "mcp/shared/dispatcher",
            "mcp/shared/direct_dispatcher",
            "mcp/server/lowlevel/",
            "mcp/server/request_state",
            "mcp/server/connection",
            "mcp/server/context",
            "mcp/server/session",
            "mcp/shared/",
        ),
    ),
    ("SDK MCPServer tool layer (arg/result conversion)", ("mcp/server/mcpserver/",)),
    ("SDK other", ("mcp/",)),
    ("mcp_types (models, per-version method tables)", ("mcp_types/",)),
    ("pydantic (validation / serialization)", ("pydantic/", "pydantic_core/")),
    ("fastmcp", ("fastmcp/",)),
    ("PyJWT (token decode, HMAC verify)", ("jwt/",)),
    ("redis-py (client, connection pool, RESP)", ("redis/",)),
    ("starlette / sse-starlette", ("starlette/", "sse_starlette/")),
    ("uvicorn (Python side)", ("uvicorn/",)),
    ("anyio", ("anyio/",)),
    ("asyncio (Python event loop, streams, tasks)", ("asyncio/",)),
    (
        "json / logging / typing / other stdlib",
        ("json/", "logging/", "typing.py", "contextlib.py", "enum.py", "uuid.py", "hmac.py", "base64.py"),
    ),
)
COMPLETE_ROOTS = frozenset({"<module>", "MainThread", "Thread._bootstrap", "_bootstrap"})
LOOP_ROOTS = ("asyncio/runners.py", "uvicorn/_compat.py", "uvloop/__init__.py", "threading.py")
LOOP_COMPONENT = "event loop in C (uvloop, httptools parser, socket/pipe syscalls)"


def _frame(frame: str) -> tuple[str, str]:
    """``"func (path/file.py:123)"`` -> ``("func", "path/file.py")``."""
    name, _, where = frame.rpartition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    return (name or frame), path


PYDANTIC_CORE = ("SchemaValidator.", "SchemaSerializer.", "TypeAdapter.", "ValidationError.")


def component(stack: list[str]) -> str:
    name, path = _frame(stack[-1])
    if path == "<built-in>":  # pyinstrument shows C functions as frames: charge them to their caller
        if name.startswith(PYDANTIC_CORE):
            return "pydantic (validation / serialization)"
        if len(stack) > 1:
            return component(stack[:-1])
    path = "/" + path.lstrip("/")
    if path.endswith(LOOP_ROOTS) or (name in ("run", "Runner.run", "run_until_complete") and "asyncio" in path):
        return LOOP_COMPONENT
    for label, needles in COMPONENTS:
        if any("/" + needle in path for needle in needles):
            return label
    return f"other ({path.rsplit('/', 1)[-1]})"


def _short(frame: str) -> str:
    name, path = _frame(frame)
    for marker in ("site-packages/", "lib/python3", "src/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker == "lib/python3":
                path = path.split("/", 1)[-1]
    return f"{name} ({path})"


# Runs the server script with pyinstrument armed: SIGUSR1 starts sampling (async_mode disabled,
# so the stacks show where the CPU goes, not what is awaited), SIGUSR2 stops and saves the session.
PYINSTRUMENT_WRAPPER = """
import runpy, signal, sys
from pyinstrument import Profiler
sys.argv = sys.argv[1:]
sys.path.insert(0, sys.argv[0].rsplit("/", 1)[0])
profiler = Profiler(interval=%r, async_mode="disabled")
def start(*_):
    profiler.start()
def stop(*_):
    profiler.stop()
    profiler.last_session.save(%r)
signal.signal(signal.SIGUSR1, start)
signal.signal(signal.SIGUSR2, stop)
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def pyinstrument_collapsed(path: Path) -> list[str]:
    """A pyinstrument session as collapsed stacks (``frame;frame;... microseconds``), py-spy style."""
    from pyinstrument.session import Session

    session = Session.load(path)
    weights: Counter[str] = Counter()
    for stack, seconds in session.frame_records:
        frames = []
        for info in stack:
            identifier, _, attributes = info.partition("\x01")
            function, filename, line = [*identifier.split("\x00"), "", ""][:3]
            cls = next((a[1:] for a in attributes.split("\x01") if a.startswith("c")), "")
            if function.startswith("<") and not filename:
                continue  # pyinstrument's synthetic frames
            frames.append(f"{cls + '.' if cls else ''}{function} ({filename}:{line})")
        if frames:
            weights[";".join(frames)] += round(seconds * 1e6)
    return [f"{stack} {us}" for stack, us in weights.items() if us > 0]


def analyse_collapsed(lines: Iterable[str], top: int = 25) -> dict[str, Any]:
    stacks: list[tuple[list[str], int]] = []
    for line in lines:
        line = line.rstrip("\n")
        if not line:
            continue
        text, _, count = line.rpartition(" ")
        stacks.append((text.split(";"), int(count)))
    total = sum(c for _, c in stacks) or 1
    by_component: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    complete = 0
    for frames, count in stacks:
        where = component(frames)
        by_component[where] += count
        self_time[_short(frames[-1]) if where != LOOP_COMPONENT else LOOP_COMPONENT] += count
        # Inclusive shares only from whole stacks (a non-pausing py-spy read can tear the outer frames).
        if _frame(frames[0])[0] in COMPLETE_ROOTS:
            complete += count
            for name in {_short(f) for f in frames}:
                inclusive[name] += count

    def pct(items: Iterable[tuple[str, int]]) -> list[tuple[str, float]]:
        return [(k, 100 * v / total) for k, v in items]

    return {
        "samples": total,
        "complete": complete,
        "components": pct(by_component.most_common()),
        "self": pct(self_time.most_common(top)),
        "inclusive": [(k, 100 * v / (complete or 1)) for k, v in inclusive.most_common(top * 3)],
    }


def render_collapsed(summary: dict[str, Any], title: str, unit: str = "samples") -> str:
    out = [f"### {title}", "", f"{summary['samples']:,} {unit}.", "", "| component (innermost Python frame) | % |"]
    out.append("|---|--:|")
    shown = [(k, v) for k, v in summary["components"] if v >= 0.3]
    rest = sum(v for _, v in summary["components"]) - sum(v for _, v in shown)
    out += [f"| {k} | {v:.1f} |" for k, v in shown]
    out.append(f"| (everything under 0.3% each) | {rest:.1f} |")
    out += ["", "| top self cost | % |", "|---|--:|"]
    out += [f"| `{k}` | {v:.1f} |" for k, v in summary["self"]]
    share = 100 * summary["complete"] / summary["samples"]
    out += ["", f"| top inclusive cost (over the {share:.0f}% of samples with whole stacks) | % |", "|---|--:|"]
    out += [f"| `{k}` | {v:.1f} |" for k, v in summary["inclusive"]]
    return "\n".join(out) + "\n"


# The pipeline's layers as they appear in stacks. A layer's own time is every sample whose deepest
# layer frame is that one and that did not go on into the next pipeline step (``step`` in
# mcplane/pipeline.py, the ``call_next`` of a middleware), nor into the app behind the HTTP auth.
LAYER_FRAMES: tuple[tuple[str, str], ...] = (
    ("AuthASGI.__call__", "auth: bearer check in the HTTP tier (AuthASGI, JWT verify)"),
    ("AuthenticateMiddleware.__call__", "auth: authenticate slot (principal onto the context)"),
    ("AuditMiddleware.__call__", "audit (records, hashes, JSONL append)"),
    ("AuthorizeMiddleware.__call__", "authorization"),
    ("RateLimitMiddleware.__call__", "rate limit (middleware + hit, caller side)"),
    ("RedisRateLimiter._run_batch", "rate limit: Redis pipeline task (redis-py)"),
    ("RedisRateLimiter._sent", "rate limit: Redis pipeline task (redis-py)"),
    ("BudgetMiddleware.__call__", "budget"),
    ("CacheMiddleware.__call__", "cache"),
)
DOWNSTREAM = frozenset({"step", "McpPath.__call__"})


def layer_breakdown(lines: Iterable[str]) -> list[tuple[str, float]]:
    """Each layer's own share of the samples (see :data:`LAYER_FRAMES`), largest first."""
    names = {frame: label for frame, label in LAYER_FRAMES}
    own: Counter[str] = Counter()
    total = 0
    for line in lines:
        text, _, count = line.rstrip("\n").rpartition(" ")
        if not text:
            continue
        weight = int(count)
        total += weight
        label = None
        for frame in text.split(";"):
            name = _frame(frame)[0]
            if name in names:
                label = names[name]
            elif label is not None and name in DOWNSTREAM:
                label = None  # went on to the next layer (or the app): not this layer's own time
        if label is not None:
            own[label] += weight
    return [(label, 100 * weight / (total or 1)) for label, weight in own.most_common()]


def render_layers(shares: list[tuple[str, float]], cpu_us_per_call: float | None) -> str:
    if not shares:
        return ""
    out = [
        "### Per layer (own time: not the layers or the tool it calls on)",
        "",
        "µs/call ≈ share \u00d7 the server's CPU per call measured under the same load with the profiler "
        "attached (the profiler inflates Python code, so read the µs as a split of the measured cost).",
        "",
        "| layer | % of samples | ≈ µs/call |",
        "|---|--:|--:|",
    ]
    for label, share in shares:
        us = "n/a" if cpu_us_per_call is None else f"{share / 100 * cpu_us_per_call:.0f}"
        out.append(f"| {label} | {share:.1f} | {us} |")
    return "\n".join(out) + "\n"


def render_cprofile(path: Path, calls: int, top: int = 40) -> str:
    stats = pstats.Stats(str(path))
    rows = []
    for (filename, line, func), (_cc, ncalls, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append((tottime, cumtime, ncalls, f"{func} ({_short(f'x ({filename}:{line})').split(' (', 1)[1]}"))
    total = sum(r[0] for r in rows) or 1
    out = [
        f"cProfile: {calls} calls sent in all (warm-up included); calls per request = ncalls ÷ that "
        "(whole process lifetime, so start-up costs show as small fractions).",
        "",
        "| function | self % | cum % | calls per request |",
        "|---|--:|--:|--:|",
    ]
    for tottime, cumtime, ncalls, name in sorted(rows, reverse=True)[:top]:
        out.append(
            f"| `{name}` | {100 * tottime / total:.1f} | {100 * cumtime / total:.1f} | {ncalls / max(calls, 1):.2f} |"
        )
    return "\n".join(out) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="mcplane", choices=list(bench.VARIANT_BY_KEY))
    parser.add_argument("--leg", default="http-2026", choices=list(bench.LEGS))
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--tool", choices=("pyinstrument", "py-spy", "cprofile"), default="pyinstrument")
    parser.add_argument("--interval", type=float, default=0.0005, help="pyinstrument sampling interval (s)")
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second (default 100)")
    parser.add_argument(
        "--nonblocking",
        action="store_true",
        help="py-spy without pausing the server: less perturbation, but many stacks come out truncated",
    )
    parser.add_argument("--out-dir", default=str(bench.BENCH / "out"))
    args = parser.parse_args()
    variant = bench.VARIANT_BY_KEY[args.server]
    if args.leg not in variant.args:
        parser.error(f"{args.server} does not run leg {args.leg}")
    out_dir = Path(args.out_dir)
    (out_dir / "logs").mkdir(parents=True, exist_ok=True)
    tag = f"profile-{args.server}-{args.leg}-c{args.concurrency}"
    log_path = out_dir / "logs" / f"{tag}.log"
    prof_path = out_dir / f"{tag}.pstats"
    raw_path = out_dir / f"{tag}-{args.tool}.collapsed"
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if args.tool == "py-spy" and not Path(py_spy).exists():
        parser.error("py-spy is not installed: pip install py-spy (or use --tool cprofile)")
    session_path = out_dir / f"{tag}.pyisession"
    if args.tool == "cprofile":
        prefix: tuple[str, ...] = ("-m", "cProfile", "-o", str(prof_path))
    elif args.tool == "pyinstrument":
        prefix = ("-c", PYINSTRUMENT_WRAPPER % (args.interval, str(session_path)))
    else:
        prefix = ()
    run_args = argparse.Namespace(
        warmup=args.warmup,
        duration=args.duration,
        ready_timeout=60.0,
        load_cpu=1,
        server_cpu=0,
        audit_dir=None,
    )
    pid_file = out_dir / f"{tag}.pid"
    pid_file.unlink(missing_ok=True)
    limit = args.warmup + args.duration + 120
    try:
        with contextlib.ExitStack() as stack:
            # Per-run JWT secret, subject and audit directory; the span sink and log directory; cleaned up on exit.
            stack.enter_context(bench.environments(run_args, [variant.key], log_path))
            if args.leg in bench.HTTP_LEGS:
                # A proxy's upstream runs on the load generator's CPU, as in the bench.
                served = stack.enter_context(
                    bench.http_server(variant, args.leg, 0, log_path, 60.0, prefix, signal.SIGINT, upstream_cpu=1)
                )
                pid = served.pid
                gen = bench.run_loadgen(
                    run_args,
                    args.leg,
                    args.concurrency,
                    port=served.port,
                    server_pid=pid,
                    log_path=log_path,
                    wait=False,
                    auth=variant.auth,
                    tool=variant.tool,
                    aux_pids=tuple(p for p in (served.upstream_pid,) if p is not None),
                )
            else:
                cmd = [bench.PYTHON, *prefix, str(bench.SERVERS / variant.script), "--transport", "stdio"]
                cmd += list(variant.args[args.leg])
                gen = bench.run_loadgen(
                    run_args,
                    args.leg,
                    args.concurrency,
                    server_cmd=cmd,
                    log_path=log_path,
                    pid_file=pid_file,
                    wait=False,
                )
                pid = 0
                while not pid and gen.poll() is None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        gen.wait(0.05)
                    with contextlib.suppress(OSError, ValueError):
                        pid = int(pid_file.read_text())
            if args.tool != "cprofile":
                # Sample once the warm-up is over, and stop before the window closes.
                with contextlib.suppress(subprocess.TimeoutExpired):
                    gen.wait(args.warmup + 0.5)
            if args.tool == "pyinstrument":
                session_path.unlink(missing_ok=True)
                os.kill(pid, signal.SIGUSR1)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    gen.wait(max(1.0, args.duration - 1))
                os.kill(pid, signal.SIGUSR2)
                deadline = time.monotonic() + 60
                while not session_path.exists() and time.monotonic() < deadline:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        gen.wait(0.1)
            if args.tool == "py-spy":
                # Sample on the load generator's CPU.
                spy = subprocess.run(
                    [
                        "taskset", "-c", "1", py_spy, "record", *(["--nonblocking"] if args.nonblocking else []),
                        "-p", str(pid),
                        "-d", str(max(1, int(args.duration - 1))), "-r", str(args.rate),
                        "--format", "raw", "-o", str(raw_path),
                    ],
                    capture_output=True,
                    text=True,
                    check=False,
                )  # fmt: skip
                if spy.returncode != 0:
                    print(spy.stderr, file=sys.stderr)
            result = bench.finish_loadgen(gen, limit)
    finally:
        bench._stop_all()
        pid_file.unlink(missing_ok=True)
    if "failed" in result:
        print(f"load generator failed: {result['failed']}", file=sys.stderr)
        return 1
    head = (
        f"## {args.server} / {args.leg} / c={args.concurrency} ({args.tool})\n\n"
        f"Under the profiler: {result['calls_per_s']:,.0f} calls/s, {result['calls_per_cpu_s'] or 0:,.0f} calls/CPU-s, "
        f"p50 {result['p50_ms']:.2f} ms, errors {result['errors']}.\n"
    )
    if args.tool == "py-spy":
        summary = analyse_collapsed(raw_path.read_text().splitlines())
        body = render_collapsed(summary, f"py-spy, {args.rate} Hz, {args.duration - 1:g} s", "on-CPU samples")
    elif args.tool == "pyinstrument":
        collapsed = pyinstrument_collapsed(session_path)
        raw_path.write_text("\n".join(collapsed) + "\n")
        summary = analyse_collapsed(collapsed)
        body = render_collapsed(
            summary, f"pyinstrument, {args.interval * 1000:g} ms interval, {args.duration - 1:g} s", "µs sampled"
        )
        efficiency = result.get("calls_per_cpu_s")
        body += "\n" + render_layers(layer_breakdown(collapsed), 1e6 / efficiency if efficiency else None)
    else:
        body = render_cprofile(prof_path, result["requests_sent"])
    text = head + "\n" + body
    (out_dir / f"{tag}-{args.tool}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
