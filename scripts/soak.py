"""Soak: many calls against one ``mcplane run`` process per transport; do its resources stay flat?

::

    python scripts/soak.py --calls 100000 --out soak.json          # HTTP, WebSocket and stdio
    python scripts/soak.py --calls 3000 --transport ws

For each transport a fresh server (``deploy/testbed/app.py``, no config) answers ``calls`` tool
calls in ``samples`` chunks. After each chunk, with nothing in flight, the server is sampled: RSS,
open file descriptors and child processes (from outside, through /proc), asyncio tasks and
threads (inside, through the app's ``debug_stats`` tool). The first chunk is the warm-up; over the
others each series gets a least-squares slope, and ``trend`` = slope x calls covered: a leak grows
with the calls, a flat series does not.

Traffic per transport, with churn so per-connection and per-session state gets made and freed:
- http: keep-alive connections sending 2026-07-28 stateless calls, each reconnecting every 500
  calls; per chunk one 2025-11-25 session opened, used for 20 calls and deleted;
- ws: WebSocket connections (2026-07-28 envelope per call), each reconnecting every 1,000 calls;
  per chunk one connection that speaks 2025-11-25 (``initialize`` first);
- stdio: one server process, requests pipelined on stdin.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from testbed import APP, REPO_ROOT, free_port, http_get, wait_until
from testbed_load import CLIENT_INFO, ENVELOPE, LEGACY, MODERN, Connection, message_of

TOLERANCE = {"open_fds": 5.0, "asyncio_tasks": 10.0, "children": 0.5, "threads": 2.0}
"""Largest trend (growth over the run) that still counts as flat, for the counted resources."""
RSS_TOLERANCE_MB = 16.0
CONCURRENCY = 8


@dataclass
class SoakResult:
    transport: str
    calls: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    seconds: float = 0.0
    samples: list[dict[str, float]] = field(default_factory=list)

    def error(self, what: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(what[:300])

    def trends(self) -> dict[str, dict[str, float]]:
        """Per series: first/last value after warm-up, least-squares slope per 10k calls, trend over the run."""
        points = self.samples[1:] if len(self.samples) > 2 else self.samples
        out: dict[str, dict[str, float]] = {}
        for name in ("rss_mb", "open_fds", "asyncio_tasks", "threads", "children"):
            xs = [p["calls"] for p in points]
            ys = [p[name] for p in points]
            slope = _slope(xs, ys)
            out[name] = {
                "first": ys[0],
                "last": ys[-1],
                "max": max(ys),
                "slope_per_10k": round(slope * 10_000, 4),
                "trend": round(slope * (xs[-1] - xs[0]), 3),
            }
        return out

    def verdict(self) -> dict[str, bool]:
        trends = self.trends()
        flat = {name: trends[name]["trend"] <= tol for name, tol in TOLERANCE.items()}
        flat["rss_mb"] = trends["rss_mb"]["trend"] <= RSS_TOLERANCE_MB
        return flat

    def summary(self) -> dict[str, Any]:
        return {
            "transport": self.transport,
            "calls": self.calls,
            "errors": self.errors,
            "error_samples": self.error_samples,
            "calls_per_s": round(self.calls / self.seconds, 1) if self.seconds else 0.0,
            "trends": self.trends(),
            "flat": self.verdict(),
            "samples": self.samples,
        }


def _slope(xs: list[float], ys: list[float]) -> float:
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


def call_body(rid: int, tool: str, args: dict[str, Any], *, modern: bool = True) -> bytes:
    params: dict[str, Any] = {"name": tool, "arguments": args}
    if modern:
        params["_meta"] = ENVELOPE
    return orjson.dumps({"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": params})


INITIALIZE = orjson.dumps(
    {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": CLIENT_INFO},
    }
)
INITIALIZED = b'{"jsonrpc":"2.0","method":"notifications/initialized"}'


def check(message: Any, rid: int, text: str | None) -> str | None:
    if not isinstance(message, dict) or message.get("id") != rid:
        return f"wrong or missing answer {message!r}"
    result = message.get("result")
    if not isinstance(result, dict) or result.get("isError"):
        return f"error {message!r}"
    if text is not None and (result.get("structuredContent") or {}).get("result") != text:
        return f"wrong echo {result!r}"
    return None


# ---------------------------------------------------------------------------------------------- drivers
class HTTPDriver:
    def __init__(self, port: int) -> None:
        self.port = port
        self.head = (
            f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Accept: application/json, text/event-stream\r\nContent-Type: application/json\r\n"
        )

    def post(self, body: bytes, extra: str = "") -> bytes:
        return (self.head + extra).encode() + b"Content-Length: %d\r\n\r\n" % len(body) + body

    async def connect(self) -> Connection:
        _, conn = await asyncio.get_running_loop().create_connection(Connection, "127.0.0.1", self.port)
        return conn

    async def chunk(self, calls: int, result: SoakResult, base: int) -> None:
        per = calls // CONCURRENCY

        async def worker(w: int) -> None:
            conn = await self.connect()
            extra = f"MCP-Protocol-Version: {MODERN}\r\nMcp-Method: tools/call\r\nMcp-Name: echo\r\n"
            for n in range(per):
                if n and n % 500 == 0:
                    conn.close()
                    conn = await self.connect()
                rid = base + w * per + n + 1
                text = f"h{rid}"
                status, headers, body = await conn.request(self.post(call_body(rid, "echo", {"text": text}), extra))
                problem = f"HTTP {status}" if status != 200 else check(message_of(headers, body), rid, text)
                result.calls += 1
                if problem:
                    result.error(problem)
            conn.close()

        await asyncio.gather(*(worker(w) for w in range(CONCURRENCY)), self.session(result, base))

    async def session(self, result: SoakResult, base: int) -> None:
        """One 2025-11-25 session: initialize, 20 calls, DELETE."""
        conn = await self.connect()
        status, headers, _ = await conn.request(self.post(INITIALIZE))
        session = headers.get(b"mcp-session-id", b"").decode()
        extra = f"Mcp-Session-Id: {session}\r\nMCP-Protocol-Version: {LEGACY}\r\n"
        await conn.request(self.post(INITIALIZED, extra))
        for n in range(20):
            rid = base + 10_000_000 + n
            status, headers, body = await conn.request(
                self.post(call_body(rid, "echo", {"text": "s"}, modern=False), extra)
            )
            problem = f"HTTP {status}" if status != 200 else check(message_of(headers, body), rid, "s")
            result.calls += 1
            if problem:
                result.error(f"session: {problem}")
        delete = f"DELETE /mcp HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n{extra}Content-Length: 0\r\n\r\n"
        status, _, _ = await conn.request(delete.encode())
        if status not in (200, 204):
            result.error(f"DELETE session: HTTP {status}")
        conn.close()

    async def stats(self) -> dict[str, Any]:
        conn = await self.connect()
        try:
            extra = f"MCP-Protocol-Version: {MODERN}\r\nMcp-Method: tools/call\r\nMcp-Name: debug_stats\r\n"
            _, headers, body = await conn.request(self.post(call_body(1, "debug_stats", {}), extra))
            return message_of(headers, body)["result"]["structuredContent"]
        finally:
            conn.close()


class WSDriver:
    def __init__(self, port: int) -> None:
        self.url = f"ws://127.0.0.1:{port}/mcp"

    def connect(self) -> Any:
        from websockets.asyncio.client import connect

        return connect(self.url, subprotocols=["mcp"], max_size=8 * 1024 * 1024)  # type: ignore[list-item]

    async def chunk(self, calls: int, result: SoakResult, base: int) -> None:
        per = calls // CONCURRENCY

        async def worker(w: int) -> None:
            n = 0
            while n < per:
                async with self.connect() as ws:
                    for _ in range(min(1000, per - n)):
                        n += 1
                        rid = base + w * per + n
                        text = f"w{rid}"
                        await ws.send(call_body(rid, "echo", {"text": text}).decode())
                        problem = check(orjson.loads(await ws.recv()), rid, text)
                        result.calls += 1
                        if problem:
                            result.error(problem)

        await asyncio.gather(*(worker(w) for w in range(CONCURRENCY)), self.legacy(result, base))

    async def legacy(self, result: SoakResult, base: int) -> None:
        async with self.connect() as ws:
            await ws.send(INITIALIZE.decode())
            await ws.recv()
            await ws.send(INITIALIZED.decode())
            for n in range(20):
                rid = base + 10_000_000 + n
                await ws.send(call_body(rid, "echo", {"text": "l"}, modern=False).decode())
                problem = check(orjson.loads(await ws.recv()), rid, "l")
                result.calls += 1
                if problem:
                    result.error(f"legacy: {problem}")

    async def stats(self) -> dict[str, Any]:
        async with self.connect() as ws:
            await ws.send(call_body(1, "debug_stats", {}).decode())
            return orjson.loads(await ws.recv())["result"]["structuredContent"]


class StdioDriver:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.waiting: dict[int, asyncio.Future[Any]] = {}
        self.reader = asyncio.ensure_future(self.read())

    async def read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            message = orjson.loads(line)
            rid = message.get("id") if isinstance(message, dict) else None
            future = self.waiting.pop(rid, None) if isinstance(rid, int) else None
            if future is not None and not future.done():
                future.set_result(message)

    async def request(self, rid: int, body: bytes) -> Any:
        assert self.proc.stdin is not None
        future = asyncio.get_running_loop().create_future()
        self.waiting[rid] = future
        self.proc.stdin.write(body + b"\n")
        await self.proc.stdin.drain()
        return await asyncio.wait_for(future, 60)

    async def chunk(self, calls: int, result: SoakResult, base: int) -> None:
        per = calls // CONCURRENCY

        async def worker(w: int) -> None:
            for n in range(per):
                rid = base + w * per + n + 1
                text = f"s{rid}"
                problem = check(await self.request(rid, call_body(rid, "echo", {"text": text})), rid, text)
                result.calls += 1
                if problem:
                    result.error(problem)

        await asyncio.gather(*(worker(w) for w in range(CONCURRENCY)))

    async def stats(self) -> dict[str, Any]:
        message = await self.request(-1, call_body(-1, "debug_stats", {}))
        return message["result"]["structuredContent"]


# ---------------------------------------------------------------------------------------------- the run
def _outside(pid: int) -> dict[str, float]:
    proc = psutil.Process(pid)
    return {
        "rss_mb": round(proc.memory_info().rss / 2**20, 2),
        "open_fds_outside": float(proc.num_fds()),
        "children_outside": float(len(proc.children(recursive=True))),
    }


def soak(transport: str, calls: int, samples: int, workdir: Path) -> SoakResult:
    """Soak one transport against a fresh server; the server is stopped at the end."""
    log = (workdir / f"soak-{transport}.log").open("ab")
    try:
        if transport == "stdio":
            return asyncio.run(_soak_stdio(calls, samples, log))
        port = free_port()
        command = [sys.executable, "-m", "mcplane.cli", "run", str(APP), "--transport", "http", "--port", str(port)]
        server = subprocess.Popen(command, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        try:
            wait_until(lambda: http_get(f"http://127.0.0.1:{port}/health")[0] == 200, 30, "server", server)
            driver = HTTPDriver(port) if transport == "http" else WSDriver(port)
            return asyncio.run(_drive(transport, driver, server.pid, calls, samples))
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    finally:
        log.close()


async def _soak_stdio(calls: int, samples: int, log: Any) -> SoakResult:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mcplane.cli", "run", str(APP),
        cwd=REPO_ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=log,
        limit=8 * 1024 * 1024,
    )  # fmt: skip
    try:
        return await _drive("stdio", StdioDriver(proc), proc.pid, calls, samples)
    finally:
        if proc.stdin is not None:
            proc.stdin.close()  # end of input: the server answers what it read and exits
        try:
            await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def _drive(transport: str, driver: Any, pid: int, calls: int, samples: int) -> SoakResult:
    result = SoakResult(transport)
    chunk = max(CONCURRENCY, calls // samples // CONCURRENCY * CONCURRENCY)
    started = time.perf_counter()
    done = 0
    while done < calls:
        before = result.calls
        await driver.chunk(min(chunk, calls - done), result, base=done * 10)
        done += max(result.calls - before, 1)
        inside = await driver.stats()  # nothing in flight now
        result.samples.append(
            {
                "calls": float(result.calls),
                "asyncio_tasks": float(inside["asyncio_tasks"]),
                "threads": float(inside["threads"]),
                "open_fds": float(inside["open_fds"]),
                "children": float(inside["children"]),
                **_outside(pid),
            }
        )
    result.seconds = time.perf_counter() - started
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=100_000, help="calls per transport")
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--transport", action="append", choices=("http", "ws", "stdio"))
    parser.add_argument("--out", help="write the results (JSON) here")
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="mcplane-soak-") as tmp:
        for transport in args.transport or ["http", "ws", "stdio"]:
            summary = soak(transport, args.calls, args.samples, Path(tmp)).summary()
            results.append(summary)
            brief = {k: v for k, v in summary.items() if k != "samples"}
            print(json.dumps(brief), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    flat = all(all(r["flat"].values()) and r["errors"] == 0 for r in results)
    print("flat" if flat else "NOT flat", file=sys.stderr)
    return 0 if flat else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
