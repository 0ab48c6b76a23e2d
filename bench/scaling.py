"""Workers and memory: ``mcplane run --workers N`` scaling, and memory per idle session and per call in flight.

``python bench/scaling.py workers``: the echo Plane served by ``mcplane run FILE --transport http
--workers N`` (the supervisor and its N worker processes, unpinned: the workers need every core),
loaded by ``loadgen.py`` on the 2026-07-28 leg; for each N the report gives calls/s, the server's
CPU (supervisor + workers) and calls per server CPU-second, and the ratio of calls/s to N = 1. On
a machine with as many cores as workers plus the load generator's share, near-linear means the
ratio approaches N; here the load generator shares the cores with the workers, so the per-core
figure (calls/CPU-s, which should stay flat as N grows) is the one to read.

``python bench/scaling.py memory``: the echo Plane (``servers/mcplane_server.py``) under one
process; its resident memory (``VmRSS``) is read before and after opening ``--sessions`` idle
2025-11-25 sessions (``initialize`` + ``notifications/initialized``, then nothing), and before
and during ``--inflight`` concurrent 2026-07-28 calls of a tool that waits until released
(``hold``), each on its own connection. Per session and per call = the growth ÷ the count. A
first batch of sessions and calls warms the allocator and is not counted. Then, as a user gets
by default, the sessions stay idle for ``sessions.idle_timeout`` (the configured default, or
``--park SECONDS``), are dropped from memory (their ids are adopted again on a next request), and
a second batch does the same: its growth over its own idle period is what an idle session keeps.
``--held-only`` skips that (it waits two idle periods).

Both print a markdown section; ``--append FILE`` adds it to a results file (``RESULTS.md``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run as bench  # noqa: E402  (the runner's process handling and readiness probe)
from loadgen import CLIENT_INFO, PROTOCOL_LEGACY, PROTOCOL_MODERN  # noqa: E402

SERVER = HERE / "servers" / "mcplane_server.py"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(part) for part in text.split()]


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


# ----------------------------------------------------------------------------- workers
def _workers_cell(args: argparse.Namespace, workers: int, log: Path) -> dict[str, Any]:
    port = _free_port()
    cmd = [
        bench.PYTHON,
        "-m",
        "mcplane.cli",
        "run",
        str(SERVER),
        "--transport",
        "http",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    ready_before = log.read_text(errors="replace").count('"event":"ready"') if log.exists() else 0
    with log.open("ab") as sink:
        sink.write(f"\n$ {' '.join(cmd)}\n".encode())
        sink.flush()
        proc = subprocess.Popen(cmd, stdout=sink, stderr=sink, cwd=HERE / "servers")
    bench._live[proc.pid] = proc  # pyright: ignore[reportPrivateUsage]
    try:
        bench._wait_ready(proc, port, args.ready_timeout)  # pyright: ignore[reportPrivateUsage]
        deadline = time.monotonic() + args.ready_timeout
        pids = _children(proc.pid)
        # One worker serves in the process itself; N > 1 are children of a supervisor.
        while workers > 1 and len(pids) < workers and time.monotonic() < deadline:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(0.05)
            pids = _children(proc.pid)
        # every worker must be serving before the load connects (its keep-alive connections are
        # accepted once, at the start): wait for each worker's lifecycle "ready" event in the log
        while time.monotonic() < deadline and log.read_text(errors="replace").count('"event":"ready"') < (
            ready_before + workers
        ):
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(0.1)
        results = []
        for concurrency in args.concurrency:
            run_args = argparse.Namespace(
                warmup=args.warmup,
                duration=args.duration,
                ready_timeout=args.ready_timeout,
                load_cpu=None,
                server_cpu=None,
            )
            result = bench.run_loadgen(
                run_args,
                "http-2026",
                concurrency,
                port=port,
                server_pid=proc.pid,
                log_path=log,
                aux_pids=tuple(pids),
            )
            result["workers"] = workers
            result["concurrency"] = concurrency
            results.append(result)
        return {"workers": workers, "cells": results}
    finally:
        bench._stop(proc)  # pyright: ignore[reportPrivateUsage]


def workers_report(args: argparse.Namespace) -> str:
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "scaling-workers.log"
    rows: dict[tuple[int, int], dict[str, Any]] = {}
    for workers in args.workers:
        for cell in _workers_cell(args, workers, log)["cells"]:
            rows[(workers, cell["concurrency"])] = cell
    lines = [
        "## `--workers N`: calls/s and calls per server CPU-second",
        "",
        f"`mcplane run servers/mcplane_server.py --transport http --workers N` (bare echo Plane), unpinned, "
        f"loaded by `loadgen.py` (http-2026) on the same {os.cpu_count()} CPUs; {args.duration:g} s window after "
        f"{args.warmup:g} s warm-up. Server CPU = supervisor + workers. Generated by `python bench/scaling.py "
        f"workers` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "| workers | conc | calls/s | ÷ 1 worker calls/s | server CPU (cores) | calls/CPU-s | ÷ 1 worker calls/CPU-s "
        "| load CPU | p50 ms | errors |",
        "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for (workers, concurrency), cell in sorted(rows.items()):
        if "failed" in cell:
            lines.append(f"| {workers} | {concurrency} | failed: {cell['failed']} | | | | | | | |")
            continue
        base = rows.get((args.workers[0], concurrency), cell)
        cpu = cell["server_cpu_s"] + (cell["aux_cpu_s"] or 0.0)
        per_cpu = cell["calls"] / cpu if cpu > 0 else 0.0
        base_cpu = base["server_cpu_s"] + (base["aux_cpu_s"] or 0.0)
        base_per_cpu = base["calls"] / base_cpu if base_cpu > 0 else 0.0
        lines.append(
            f"| {workers} | {concurrency} | {cell['calls_per_s']:,.0f} | "
            f"**{cell['calls_per_s'] / base['calls_per_s']:.2f}\u00d7** | "
            f"{cpu / cell['wall_s']:.2f} | {per_cpu:,.0f} | "
            f"{per_cpu / base_per_cpu if base_per_cpu else 0:.2f}\u00d7 | {cell['load_cpu_util'] * 100:.0f}% | "
            f"{cell['p50_ms']:.3f} | {cell['errors']} |"
        )
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- memory
class _Conn:
    """One raw HTTP/1.1 keep-alive connection (the bench's own client: nothing of the SDK's)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int) -> None:
        self.reader, self.writer, self.port = reader, writer, port

    @classmethod
    async def open(cls, port: int) -> _Conn:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer, port)

    async def post(self, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        data = json.dumps(body).encode()
        head = (
            f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nContent-Type: application/json\r\n"
            "Accept: application/json, text/event-stream\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            + f"Content-Length: {len(data)}\r\n\r\n"
        )
        self.writer.write(head.encode() + data)
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        found: dict[str, str] = {}
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            found[name.strip().lower()] = value.strip()
        if "content-length" in found:
            payload = await self.reader.readexactly(int(found["content-length"]))
        elif found.get("transfer-encoding") == "chunked":
            payload = b""
            while True:
                size = int((await self.reader.readline()).strip(), 16)
                if size == 0:
                    await self.reader.readline()
                    break
                payload += await self.reader.readexactly(size)
                await self.reader.readline()
        else:
            payload = b""
        return status, found, payload

    def close(self) -> None:
        self.writer.close()


async def _open_session(conn: _Conn) -> str:
    status, headers, _ = await conn.post(
        {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {"protocolVersion": PROTOCOL_LEGACY, "capabilities": {}, "clientInfo": CLIENT_INFO},
        },
        {"MCP-Protocol-Version": PROTOCOL_LEGACY},
    )
    session = headers.get("mcp-session-id")
    if status != 200 or session is None:
        raise RuntimeError(f"initialize answered {status} without a session")
    status, _, _ = await conn.post(
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"MCP-Protocol-Version": PROTOCOL_LEGACY, "Mcp-Session-Id": session},
    )
    if status != 202:
        raise RuntimeError(f"notifications/initialized answered {status}")
    return session


def _settled_rss(pid: int) -> int:
    """VmRSS once it stops moving (three equal reads 50 ms apart, at most 5 s)."""
    last, same, deadline = -1, 0, time.monotonic() + 5
    while time.monotonic() < deadline:
        now = _rss_kib(pid)
        same = same + 1 if now == last else 0
        if same >= 2:
            return now
        last = now
        time.sleep(0.05)
    return last


async def _sessions(port: int, count: int) -> None:
    conn = await _Conn.open(port)
    try:
        for _ in range(count):
            await _open_session(conn)
    finally:
        conn.close()


async def _hold_calls(port: int, count: int, release: asyncio.Event, pid: int, arrived: list[int]) -> None:
    conns = [await _Conn.open(port) for _ in range(count)]
    modern = {"MCP-Protocol-Version": PROTOCOL_MODERN, "Mcp-Method": "tools/call", "Mcp-Name": "hold"}
    envelope = {
        "io.modelcontextprotocol/protocolVersion": PROTOCOL_MODERN,
        "io.modelcontextprotocol/clientInfo": CLIENT_INFO,
        "io.modelcontextprotocol/clientCapabilities": {},
    }

    async def one(index: int, conn: _Conn) -> None:
        body = {
            "jsonrpc": "2.0",
            "id": index,
            "method": "tools/call",
            "params": {"name": "hold", "arguments": {"key": str(port)}, "_meta": envelope},
        }
        status, _, _ = await conn.post(body, modern)
        if status != 200:
            raise RuntimeError(f"hold answered {status}")

    tasks = [asyncio.ensure_future(one(i, c)) for i, c in enumerate(conns)]
    await release.wait()
    await asyncio.gather(*tasks)
    for conn in conns:
        conn.close()


def _release(port: int) -> None:
    """The bench server's ``release`` tool ends every ``hold`` call (2026-07-28, one request)."""

    async def go() -> None:
        conn = await _Conn.open(port)
        envelope = {
            "io.modelcontextprotocol/protocolVersion": PROTOCOL_MODERN,
            "io.modelcontextprotocol/clientCapabilities": {},
        }
        await conn.post(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "tools/call",
                "params": {"name": "release", "arguments": {"key": str(port)}, "_meta": envelope},
            },
            {"MCP-Protocol-Version": PROTOCOL_MODERN, "Mcp-Method": "tools/call", "Mcp-Name": "release"},
        )
        conn.close()

    asyncio.run(go())


async def _measure_inflight(port: int, pid: int, count: int) -> tuple[int, int]:
    """RSS before and while ``count`` calls are in flight (then released)."""
    before = await asyncio.to_thread(_settled_rss, pid)
    release = asyncio.Event()
    arrived: list[int] = []
    task = asyncio.ensure_future(_hold_calls(port, count, release, pid, arrived))
    during = await asyncio.to_thread(_settled_rss, pid)
    await asyncio.to_thread(_release, port)
    release.set()
    await task
    return before, during


def memory_report(args: argparse.Namespace) -> str:
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "scaling-memory.log"
    variant = bench.VARIANT_BY_KEY["mcplane"]
    if args.park:
        os.environ["MCPLANE_BENCH_SESSION_IDLE"] = str(args.park)
        idle_timeout = args.park
    else:
        os.environ.pop("MCPLANE_BENCH_SESSION_IDLE", None)
        from mcplane.config import SessionsSection

        idle_timeout = SessionsSection().idle_timeout
    first = parked = 0
    with bench.http_server(variant, "http-2025", None, log, args.ready_timeout) as served:
        pid, port = served.pid, served.port
        asyncio.run(_sessions(port, args.warm_sessions))
        asyncio.run(_measure_inflight(port, pid, args.warm_inflight))
        before = _settled_rss(pid)
        asyncio.run(_sessions(port, args.sessions))
        after = _settled_rss(pid)
        in_before, in_during = asyncio.run(_measure_inflight(port, pid, args.inflight))
        if not args.held_only:
            # Once the sessions above were idle that long (dropped), a second batch reuses what they
            # freed: the growth over its own idle period is what a dropped session keeps.
            time.sleep(idle_timeout + 2)
            first = _settled_rss(pid)
            asyncio.run(_sessions(port, args.sessions))
            time.sleep(idle_timeout + 2)
            parked = _settled_rss(pid)
    per_session = (after - before) * 1024 / args.sessions
    per_call = (in_during - in_before) * 1024 / args.inflight
    lines = [
        "## Memory: per idle 2025-11-25 session and per call in flight",
        "",
        f"Bare echo Plane (`servers/mcplane_server.py`, one process), resident memory (`VmRSS`) read once it "
        f"settles; {args.warm_sessions} sessions and {args.warm_inflight} calls first, to warm the allocator "
        f"(not counted). Generated by `python bench/scaling.py memory` on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "| what | count | RSS before KiB | RSS after KiB | per item |",
        "|---|--:|--:|--:|--:|",
        f"| 2025-11-25 session held (`initialize` + `notifications/initialized`, idle less than "
        f"`sessions.idle_timeout` = {idle_timeout:g} s) | {args.sessions} | {before:,} | "
        f"{after:,} | **{per_session / 1024:.1f} KiB** |",
        f"| 2026-07-28 `tools/call` in flight (tool waiting, own connection) | {args.inflight} | {in_before:,} | "
        f"{in_during:,} | **{per_call / 1024:.1f} KiB** |",
    ]
    if not args.held_only:
        lines.insert(
            -1,
            f"| the same, once idle {idle_timeout:g} s (`sessions.idle_timeout`{'' if args.park else ', default'}: "
            f"dropped, adopted again on a next request) | {args.sessions} | {first:,} | {parked:,} | "
            f"**{(parked - first) / args.sessions:.1f} KiB** |",
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("workers", "memory", "both"))
    parser.add_argument("--workers", default="1,2", help="comma list (default 1,2)")
    parser.add_argument("--concurrency", default="32", help="comma list (default 32)")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--warm-sessions", type=int, default=200)
    parser.add_argument("--inflight", type=int, default=500)
    parser.add_argument("--warm-inflight", type=int, default=100)
    parser.add_argument("--park", type=float, default=0.0, help="sessions.idle_timeout in seconds (0: the default)")
    parser.add_argument("--held-only", action="store_true", help="do not wait for idle sessions to be dropped")
    parser.add_argument("--ready-timeout", type=float, default=60.0)
    parser.add_argument("--out-dir", default=str(HERE / "out"))
    parser.add_argument("--append", help="append the report to this markdown file")
    args = parser.parse_args()
    args.workers = [int(n) for n in args.workers.split(",")]
    args.concurrency = [int(n) for n in args.concurrency.split(",")]
    parts = []
    try:
        if args.what in ("memory", "both"):
            parts.append(memory_report(args))
        if args.what in ("workers", "both"):
            parts.append(workers_report(args))
    finally:
        bench._stop_all()  # pyright: ignore[reportPrivateUsage]
    report = "\n".join(parts)
    sys.stdout.write(report)
    if args.append:
        with open(args.append, "a", encoding="utf-8") as sink:
            sink.write("\n" + report)


if __name__ == "__main__":
    main()
