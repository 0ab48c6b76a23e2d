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
import dataclasses
import datetime as dt
import http.client
import json
import os
import queue
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fullpipe
import observe
import overhead
import search
from report import (
    _clean,
    _fmt,
    _noisy,
    _pct,
    cpu_model,
    full_ratios,
    ratios,
    render,
    source_state,
    versions,
)
from variants import (
    BENCH,
    DEFAULT_LEGS,
    GATEWAY,
    HTTP_LEGS,
    LEGS,
    OBSERVABILITY,
    OVERHEAD_RESULTS,
    PYTHON,
    SERVERS,
    SWEEP,
    VARIANT_BY_KEY,
    VARIANTS,
    Variant,
)

import openapi

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


class Served(NamedTuple):
    pid: int
    port: int
    upstream_pid: int | None = None


@contextlib.contextmanager
def http_server(
    variant: Variant,
    leg: str,
    cpu: int | None,
    log_path: Path,
    timeout: float,
    prefix: tuple[str, ...] = (),
    stop_signal: int = signal.SIGTERM,
    upstream_cpu: int | None = None,
) -> Iterator[Served]:
    """Start the variant's HTTP server, wait until a real tools/call answers, yield its pid and port.

    ``prefix`` goes between the interpreter and the script (``-m cProfile -o FILE`` when profiling;
    then stop with SIGINT: uvicorn re-raises SIGTERM after shutdown, which kills cProfile unsaved).
    A proxy (``variant.upstream``) gets its upstream started first, pinned to ``upstream_cpu``,
    and its URL as ``--upstream``; the upstream stops after the proxy.
    """
    if variant.upstream is not None:
        upstream = VARIANT_BY_KEY[variant.upstream]
        with http_server(upstream, leg, upstream_cpu, log_path, timeout) as up:
            url = f"http://127.0.0.1:{up.port}/mcp"
            proxy = dataclasses.replace(variant, upstream=None, args={leg: (*variant.args[leg], "--upstream", url)})
            with http_server(proxy, leg, cpu, log_path, timeout, prefix, stop_signal) as served:
                yield served._replace(upstream_pid=up.pid)
        return
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
        _wait_ready(proc, port, timeout, auth=variant.auth, tool=variant.tool)
        yield Served(proc.pid, port)
    finally:
        _stop(proc, stop_signal)


def _wait_ready(
    proc: subprocess.Popen[Any], port: int, timeout: float, *, auth: bool = False, tool: str = "echo"
) -> None:
    """Poll a real 2026-07-28 tools/call until it echoes, under ``timeout`` (no fixed sleeps)."""
    deadline = _now() + timeout
    body = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {
                "name": tool,
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
        "Mcp-Name": tool,
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
    tool: str = "echo",
    aux_pids: tuple[int, ...] = (),
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
    if tool != "echo":
        cmd += ["--tool", tool]
    for aux in aux_pids:
        cmd += ["--aux-pid", str(aux)]
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
    obs_env: observe.ObservabilityEnv | None = None,
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
                    spans_before = obs_env.sink_stats()["spans"] if obs_env is not None and variant.observed else 0
                    with http_server(
                        variant, leg, args.server_cpu, log_path, args.ready_timeout, upstream_cpu=args.load_cpu
                    ) as served:
                        aux = tuple(p for p in (served.upstream_pid,) if p is not None)
                        if obs_env is not None and variant.observed:
                            aux += (obs_env.sink_pid,)
                        for conc in args.concurrency:
                            _progress(done + len(results) + 1, total, leg, variant.key, conc)
                            results.append(
                                (
                                    conc,
                                    run_loadgen(
                                        args,
                                        leg,
                                        conc,
                                        port=served.port,
                                        server_pid=served.pid,
                                        log_path=log_path,
                                        auth=variant.auth,
                                        tool=variant.tool,
                                        aux_pids=aux,
                                    ),
                                )
                            )
                    if obs_env is not None and variant.observed:
                        # The server is stopped: its spans are flushed and its log file is complete.
                        check = observe_check(obs_env, served.pid, spans_before, [r for _, r in results])
                        results = [(conc, {**r, "observed": check}) for conc, r in results]
                else:
                    server_cmd = [PYTHON, str(SERVERS / variant.script), "--transport", "stdio", *variant.args[leg]]
                    for conc in args.concurrency:
                        _progress(done + len(results) + 1, total, leg, variant.key, conc)
                        results.append((conc, run_loadgen(args, leg, conc, server_cmd=server_cmd, log_path=log_path)))
            except ServerError as exc:
                failed = {"failed": f"{exc} (log: {log_path.relative_to(BENCH)})"}
                results += [(conc, failed) for conc in args.concurrency[len(results) :]]
            for conc, result in results:
                cells.append({**base, "concurrency": conc, "round": round_no, **_answered(result)})
                _report_cell(cells[-1])
            done += len(args.concurrency)
    return cells


def observe_check(
    env: observe.ObservabilityEnv, pid: int, spans_before: int, results: list[dict[str, Any]]
) -> dict[str, int]:
    """What one observed server run left behind (both concurrencies, warm-ups and probes included)."""
    return {
        "requests": sum(r.get("requests_sent", 0) for r in results),
        "spans": env.sink_stats()["spans"] - spans_before,
        "log_records": env.call_log_records(pid),
    }


def _progress(i: int, total: int, leg: str, server: str, conc: int) -> None:
    print(f"[{i}/{total}] {leg:<10} {server:<13} c={conc:<3}", end=" ", file=sys.stderr, flush=True)


def _answered(result: dict[str, Any]) -> dict[str, Any]:
    """``result``, or a failed cell when not one call of it was answered (nothing to measure)."""
    if "failed" in result or (result.get("calls") and result.get("calls_per_s") is not None):
        return result
    samples = result.get("error_samples") or []
    example = f", e.g. {samples[0]}" if samples else ""
    return {
        "failed": f"no call answered ({result.get('errors', 0)} errors{example})",
        "errors": result.get("errors", 0),
        "error_samples": samples,
    }


def _report_cell(cell: dict[str, Any]) -> None:
    if "failed" in cell or cell.get("calls_per_s") is None or cell.get("p50_ms") is None:
        cell.setdefault("failed", "no call answered")
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
        "--observability",
        action="store_true",
        help="the observability leg: the echo Plane with metrics, call logs and tracing each on or off "
        f"(servers {','.join(OBSERVABILITY)}; HTTP legs; writes {OVERHEAD_RESULTS.name} unless --results)",
    )
    parser.add_argument(
        "--gateway",
        action="store_true",
        help="the gateway leg: one hop (mcplane gateway, FastMCP proxy) in front of the echo Plane vs the Plane "
        f"direct (servers {','.join(GATEWAY)}; HTTP legs; writes {OVERHEAD_RESULTS.name} unless --results)",
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
    parser.add_argument(
        "--results",
        default=str(BENCH / "RESULTS.md"),
        help=f"markdown output, overwritten (default RESULTS.md; {OVERHEAD_RESULTS.name} with --observability "
        "or --gateway)",
    )
    parser.add_argument("--out-dir", default=str(BENCH / "out"), help="raw JSON and server logs")
    args = parser.parse_args(argv)
    given = argv if argv is not None else sys.argv[1:]
    suites = [
        keys
        for flag, keys in ((args.sweep, SWEEP), (args.observability, OBSERVABILITY), (args.gateway, GATEWAY))
        if flag
    ]
    if suites:
        if "--servers" not in given:
            args.servers = ",".join(dict.fromkeys(key for keys in suites for key in keys))
        if "--legs" not in given:
            args.legs = "http-2026,http-2025"
        if (args.observability or args.gateway) and "--results" not in given:
            args.results = str(OVERHEAD_RESULTS)
    args.results_given = "--results" in given
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


@contextlib.contextmanager
def environments(
    args: argparse.Namespace, servers: Iterable[str], log_path: Path
) -> Iterator[tuple[fullpipe.PipelineEnv | None, observe.ObservabilityEnv | None]]:
    """What the servers of a run need: the pipeline's secrets and audit directory, the span sink and log directory."""
    variants = [VARIANT_BY_KEY[key] for key in servers]
    with contextlib.ExitStack() as stack:
        pipeline = (
            stack.enter_context(fullpipe.pipeline_env(args.audit_dir)) if any(v.layered for v in variants) else None
        )
        observed = None
        if any(v.observed for v in variants):
            log_path.parent.mkdir(parents=True, exist_ok=True)
            observed = stack.enter_context(observe.observability_env(args.load_cpu, log_path))
        yield pipeline, observed


def results_path(args: argparse.Namespace, servers: Iterable[str]) -> Path:
    """``--results``, else where a run of these servers reports (re-rendering an overhead run keeps RESULTS.md)."""
    if not getattr(args, "results_given", True) and any(VARIANT_BY_KEY[s].role in ("obs", "hop") for s in servers):
        return OVERHEAD_RESULTS
    return Path(args.results)


def report(meta: dict[str, Any], cells: list[dict[str, Any]]) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    """The markdown report, the raw record and the aggregated rows of one run's cells."""
    rows = aggregate(cells)
    ratio_rows = ratios(rows, meta["legs"], meta["concurrency"])
    full_rows = full_ratios(rows, meta["legs"], meta["concurrency"])
    obs_rows = overhead.observability_rows(rows, meta["legs"], meta["concurrency"])
    hops = overhead.hop_rows(rows, meta["legs"], meta["concurrency"])
    raw = {
        "meta": meta,
        "cells": cells,
        "rows": rows,
        "ratios": ratio_rows,
        "full_ratios": full_rows,
        "observability": obs_rows,
        "gateway": hops,
    }
    extra = overhead.render_observability(meta, obs_rows) + overhead.render_gateway(hops)
    return render(meta, rows, ratio_rows, full_rows, extra), raw, rows


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
        servers = {server for _, server in redo}
        with environments(args, servers, out_dir / "logs" / f"{stamp}-otlp-sink.log") as (_, observed):
            try:
                cells = cells + run_matrix(args, out_dir, stamp, only=redo, first_round=first, obs_env=observed)
            finally:
                _stop_all()
        meta = {**meta, "reruns": [*meta.get("reruns", []), {"date": stamp, "cells": sorted(map(list, redo))}]}
        if observed is not None:  # the span and log totals of both runs
            before = meta.get("observability") or {}
            meta["observability"] = {k: before.get(k, 0) + v for k, v in observed.describe().items()}
        text, raw, rows = report(meta, cells)
        (out_dir / f"results-{stamp}.json").write_text(json.dumps(raw, indent=2))
        (out_dir / "latest.json").write_text(json.dumps(raw, indent=2))
        target = results_path(args, meta["servers"])
        target.write_text(openapi.keep_section(target, search.keep_section(target, text)))
        print(text)
    return 1 if any(not _clean(r) for r in rows) else 0


LOCAL_OPTIONS = ("--out-dir", "--results", "--audit-dir")
"""Where a run writes, not what it measures: left out of the command a report shows."""


def shown_command(argv: list[str]) -> str:
    """The command line a report names: ``argv`` without :data:`LOCAL_OPTIONS` and their values."""
    shown: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in LOCAL_OPTIONS:
            skip = True
        elif not arg.startswith(tuple(f"{option}=" for option in LOCAL_OPTIONS)):
            shown.append(arg)
    return " ".join(["python bench/run.py", *shown])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render:
        recorded = json.loads(Path(args.render).read_text())
        text, _, rows = report(recorded["meta"], recorded["cells"])
        target = results_path(args, recorded["meta"]["servers"])
        target.write_text(openapi.keep_section(target, search.keep_section(target, text)))
        print(text)
        return 1 if any(not _clean(r) for r in rows) else 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.rerun_noisy:
        return rerun_noisy(args, Path(args.rerun_noisy))
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    command = shown_command(argv if argv is not None else sys.argv[1:])
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
    try:
        with environments(args, args.servers, out_dir / "logs" / f"{stamp}-otlp-sink.log") as (env, observed):
            try:
                cells = run_matrix(args, out_dir, stamp, obs_env=observed)
            finally:
                _stop_all()
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    if env is not None:
        meta["pipeline"] = env.describe()
    if observed is not None:
        meta["observability"] = observed.describe()
    text, raw, rows = report(meta, cells)
    (out_dir / f"results-{stamp}.json").write_text(json.dumps(raw, indent=2))
    (out_dir / "latest.json").write_text(json.dumps(raw, indent=2))
    target = Path(args.results)
    target.write_text(openapi.keep_section(target, search.keep_section(target, text)))
    print(text)
    return 1 if any(not _clean(r) for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
