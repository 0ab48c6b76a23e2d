"""Mixed tool calls through the test bed's load balancer, for a bounded time; p50/p99 and every outcome.

::

    python scripts/testbed_load.py --duration 60 --era 2026 --out load-2026.json   # starts its own test bed
    python scripts/testbed_load.py --url http://127.0.0.1:PORT/mcp --api-key KEY ...  # a test bed already up

``concurrency`` keep-alive HTTP/1.1 connections, each with one request in flight, requests built
from byte templates and answers parsed by httptools (as ``bench/loadgen.py`` does), so the
generator costs little next to three replicas, nginx and PostgreSQL on one machine. The mix, per
20 calls: 10 ``echo``, 6 ``catalog``, 3 ``quota_lookup`` (rate-limited and cached in Redis),
1 ``slow_report`` (20 ms).

Eras: ``2026`` sends 2026-07-28 stateless requests (``_meta`` envelope, ``Mcp-Method``/``Mcp-Name``
headers); ``2025`` opens one 2025-11-25 session per connection (``initialize``,
``notifications/initialized``) and sends ``Mcp-Session-Id`` on every call; sessions are deleted
at the end.

Outcomes: ``ok``; ``refused`` (``quota_lookup`` answered ``rate_limited``: the limit doing its
job); anything else is an error (HTTP status, JSON-RPC error, an error result, a wrong answer, a
lost connection), with a few samples kept. Every answered call's arguments are kept so the audit
log can be checked against them (``acked``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httptools
import orjson

MODERN = "2026-07-28"
LEGACY = "2025-11-25"
CLIENT_INFO = {"name": "mcplane-testbed", "version": "1"}
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientInfo": CLIENT_INFO,
    "io.modelcontextprotocol/clientCapabilities": {},
}
ACCOUNTS = [f"acct-{n}" for n in range(8)]
MIX = ["echo"] * 10 + ["catalog"] * 6 + ["quota_lookup"] * 3 + ["slow_report"]
MIX_ORDER = [MIX[(n * 7) % len(MIX)] for n in range(len(MIX))]  # interleaved, same counts
MAX_SAMPLES = 8


def arguments(tool: str, nonce: str, n: int) -> dict[str, Any]:
    if tool == "echo":
        return {"text": nonce}
    if tool == "catalog":
        return {"sku": f"sku-{n % 120}", "nonce": nonce}
    if tool == "quota_lookup":
        return {"account": ACCOUNTS[n % len(ACCOUNTS)]}  # repeats: the cache gets hits
    return {"ms": 20, "nonce": nonce}


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))]


@dataclass
class LoadResult:
    era: str
    duration: float = 0.0
    concurrency: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    """``<tool>:ok``, ``<tool>:refused``, ``<tool>:error`` counts."""
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    acked: list[tuple[str, dict[str, Any], str]] = field(default_factory=list)
    """(tool, arguments, "ok" | "error") of every answered call (for the audit check)."""
    refused_times: list[float] = field(default_factory=list)

    def error(self, what: str) -> None:
        self.errors += 1
        if len(self.error_samples) < MAX_SAMPLES:
            self.error_samples.append(what[:300])

    @property
    def calls(self) -> int:
        return len(self.latencies_ms)

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies_ms)
        return {
            "era": self.era,
            "duration_s": round(self.duration, 3),
            "concurrency": self.concurrency,
            "calls": self.calls,
            "calls_per_s": round(self.calls / self.duration, 1) if self.duration else 0.0,
            "p50_ms": round(percentile(ordered, 0.50), 3),
            "p99_ms": round(percentile(ordered, 0.99), 3),
            "max_ms": round(ordered[-1], 3) if ordered else None,
            "errors": self.errors,
            "error_samples": self.error_samples,
            "outcomes": dict(sorted(self.outcomes.items())),
        }


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; ``await request(bytes)`` → (status, headers, body)."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[tuple[int, dict[bytes, bytes], bytes]] | None = None
        self.headers: dict[bytes, bytes] = {}
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"unparseable HTTP response: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._fail(ConnectionError("connection closed with a request in flight"))

    def _fail(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.close()

    def on_message_begin(self) -> None:
        self.headers, self.body = {}, []

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result((self.parser.get_status_code(), self.headers, b"".join(self.body)))

    async def request(self, data: bytes, seconds: float = 60.0) -> tuple[int, dict[bytes, bytes], bytes]:
        if self.transport is None:
            raise ConnectionError("not connected")
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await asyncio.wait_for(self.waiter, seconds)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def message_of(headers: dict[bytes, bytes], body: bytes) -> Any:
    """The JSON-RPC message of a JSON or SSE answer (the last data event that has an id)."""
    if not headers.get(b"content-type", b"").startswith(b"text/event-stream"):
        return orjson.loads(body)
    found: Any = None
    for event in body.replace(b"\r\n", b"\n").split(b"\n\n"):
        data = b"\n".join(line[5:].lstrip(b" ") for line in event.split(b"\n") if line.startswith(b"data:"))
        if data:
            message = orjson.loads(data)
            if isinstance(message, dict) and "id" in message:
                found = message
    return found


class Load:
    def __init__(
        self, url: str, api_key: str | None, era: str, concurrency: int, run_id: str, tools: list[str] | None = None
    ) -> None:
        parts = urlsplit(url)
        self.host, self.port, self.path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path or "/mcp"
        self.era, self.concurrency, self.run_id = era, concurrency, run_id
        self.order = tools or MIX_ORDER
        self.calls_left: int | None = None
        """Stop after this many calls in all (``None``: run for the duration)."""
        auth = f"Authorization: Bearer {api_key}\r\n" if api_key else ""
        self.auth = auth
        self.common = (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{auth}"
            "Accept: application/json, text/event-stream\r\nContent-Type: application/json\r\n"
        ).encode()
        self.result = LoadResult(era=era, concurrency=concurrency)
        self.recording = False
        self.running = True
        self.max_errors: int | None = None

    def post(self, body: bytes, extra: str = "") -> bytes:
        return self.common + extra.encode() + b"Content-Length: %d\r\n\r\n" % len(body) + body

    async def connect(self) -> Connection:
        _, conn = await asyncio.get_running_loop().create_connection(Connection, self.host, self.port)
        return conn

    async def open_session(self, conn: Connection) -> str:
        init = {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": CLIENT_INFO},
        }
        status, headers, body = await conn.request(self.post(orjson.dumps(init)))
        session = headers.get(b"mcp-session-id")
        if status != 200 or session is None:
            raise RuntimeError(f"initialize: HTTP {status}: {body[:200]!r}")
        extra = f"Mcp-Session-Id: {session.decode()}\r\nMCP-Protocol-Version: {LEGACY}\r\n"
        note = b'{"jsonrpc":"2.0","method":"notifications/initialized"}'
        status, _, body = await conn.request(self.post(note, extra))
        if status not in (200, 202):
            raise RuntimeError(f"notifications/initialized: HTTP {status}: {body[:200]!r}")
        return extra

    def call_request(self, tool: str, args: dict[str, Any], rid: int, session: str) -> bytes:
        params: dict[str, Any] = {"name": tool, "arguments": args}
        if self.era == "2026":
            params["_meta"] = ENVELOPE
            extra = f"MCP-Protocol-Version: {MODERN}\r\nMcp-Method: tools/call\r\nMcp-Name: {tool}\r\n"
        else:
            extra = session
        body = orjson.dumps({"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": params})
        return self.post(body, extra)

    async def worker(self, index: int) -> None:
        result = self.result
        conn = await self.connect()
        session = ""
        try:
            if self.era == "2025":
                try:
                    session = await self.open_session(conn)
                except (RuntimeError, ConnectionError, OSError, TimeoutError) as exc:
                    result.outcomes["session:error"] += 1
                    result.error(f"session: {exc}")
                    return
            n = 0
            while self.running:
                n += 1
                if self.calls_left is not None:
                    if self.calls_left <= 0:
                        break
                    self.calls_left -= 1
                tool = self.order[(n + index) % len(self.order)]
                nonce = f"{self.run_id}-{index}-{n}"
                args = arguments(tool, nonce, n + index)
                started = time.perf_counter()
                try:
                    if conn.transport is None:
                        conn = await self.connect()
                    status, headers, body = await conn.request(self.call_request(tool, args, n, session))
                    outcome = self.judge(tool, args, n, status, headers, body)
                except (ConnectionError, OSError, TimeoutError, ValueError) as exc:
                    outcome = f"{type(exc).__name__}: {exc}"
                if self.recording:
                    result.latencies_ms.append((time.perf_counter() - started) * 1000)
                if outcome in ("ok", "refused"):
                    result.outcomes[f"{tool}:{outcome}"] += 1
                    result.acked.append((tool, args, "ok" if outcome == "ok" else "error"))
                    if outcome == "refused":
                        result.refused_times.append(time.monotonic())
                else:
                    result.outcomes[f"{tool}:error"] += 1
                    result.error(f"{tool}: {outcome}")
                    if self.max_errors is not None and result.errors > self.max_errors:
                        self.running = False
        finally:
            if session and conn.transport is not None:
                delete = f"DELETE {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{self.auth}{session}"
                try:
                    await conn.request((delete + "Content-Length: 0\r\n\r\n").encode(), seconds=5)
                except (ConnectionError, OSError, TimeoutError):
                    pass
            conn.close()

    @staticmethod
    def judge(tool: str, args: dict[str, Any], rid: int, status: int, headers: dict[bytes, bytes], body: bytes) -> str:
        if status != 200:
            return f"HTTP {status}: {body[:160]!r}"
        message = message_of(headers, body)
        if not isinstance(message, dict) or message.get("id") != rid:
            return f"wrong or missing answer: {body[:160]!r}"
        if "error" in message:
            return f"JSON-RPC error {message['error']!r}"
        result = message.get("result") or {}
        if result.get("isError"):
            code = ((result.get("_meta") or {}).get("mcplane/error") or {}).get("code")
            if tool == "quota_lookup" and code == "rate_limited":
                return "refused"
            return f"error result {code!r}"
        if tool == "echo" and (result.get("structuredContent") or {}).get("result") != args["text"]:
            return f"wrong echo {result!r}"
        return "ok"

    async def run(self, duration: float, warmup: float, max_errors: int | None = None) -> LoadResult:
        self.max_errors = max_errors
        tasks = [asyncio.create_task(self.worker(i)) for i in range(self.concurrency)]
        waiter = asyncio.gather(*tasks)
        done, _ = await asyncio.wait({waiter}, timeout=warmup)
        self.recording = True
        started = time.perf_counter()
        if not done:
            await asyncio.wait({waiter}, timeout=duration)
        self.recording = False
        self.result.duration = time.perf_counter() - started
        self.running = False
        await waiter  # every worker finishes its call in flight
        return self.result


async def run_load(
    url: str,
    api_key: str | None,
    *,
    era: str = "2026",
    duration: float = 10.0,
    warmup: float = 1.0,
    concurrency: int = 16,
    run_id: str = "run",
    max_errors: int | None = None,
) -> LoadResult:
    return await Load(url, api_key, era, concurrency, run_id).run(duration, warmup, max_errors)


class CPUMeter:
    """CPU seconds of each part of a test bed over a run (psutil): replicas, nginx, PostgreSQL (every
    ``postgres`` process: the replicas' backends start with their first audit write), this process."""

    def __init__(self, bed: Any) -> None:
        import psutil

        nginx = psutil.Process(bed.nginx_pid)
        self.fixed: dict[str, list[Any]] = {
            "replicas": [psutil.Process(r.pid) for r in bed.members],
            "nginx": [nginx, *nginx.children()],
            "load_generator": [psutil.Process()],
        }
        self.started = time.perf_counter()
        self.before = {pid: seconds for procs in self.fixed.values() for pid, seconds in self._times(procs).items()}
        self.before.update(self._times(self._postgres()))

    @staticmethod
    def _postgres() -> list[Any]:
        import psutil

        return [p for p in psutil.process_iter(["name"]) if (p.info["name"] or "").startswith("postgres")]

    @staticmethod
    def _times(procs: list[Any]) -> dict[int, float]:
        out: dict[int, float] = {}
        for proc in procs:
            try:
                times = proc.cpu_times()
            except Exception:  # a process that ended (a PostgreSQL backend): its time is gone
                continue
            out[proc.pid] = times.user + times.system
        return out

    def read(self, calls: int) -> dict[str, Any]:
        wall = time.perf_counter() - self.started
        groups = {**self.fixed, "postgres": self._postgres()}
        used = {
            name: sum(seconds - self.before.get(pid, 0.0) for pid, seconds in self._times(procs).items())
            for name, procs in groups.items()
        }
        out: dict[str, Any] = {f"{name}_cores": round(seconds / wall, 3) for name, seconds in used.items()}
        if used["replicas"] > 0:
            out["calls_per_replica_cpu_second"] = round(calls / used["replicas"], 1)
        return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--url", help="the load balancer's /mcp URL (default: start a test bed for the run)")
    parser.add_argument("--api-key")
    parser.add_argument("--era", choices=("2026", "2025"), action="append")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--audit", choices=("postgres", "file"), default="postgres", help="the test bed's audit sink")
    parser.add_argument("--max-errors", type=int, default=100, help="stop a run after this many errors")
    parser.add_argument("--out", help="write the summaries (JSON) here")
    args = parser.parse_args(argv)
    eras = args.era or ["2026", "2025"]
    summaries: list[dict[str, Any]] = []

    def go(url: str, keys: list[str | None], bed: Any = None) -> None:
        for n, era in enumerate(eras):
            meter = CPUMeter(bed) if bed is not None else None
            load = run_load(
                url,
                keys[n % len(keys)],
                era=era,
                duration=args.duration,
                warmup=args.warmup,
                concurrency=args.concurrency,
                run_id=f"cli{era}",
                max_errors=args.max_errors,
            )
            result = asyncio.run(load)
            summary = result.summary()
            if meter is not None:
                summary["cpu"] = meter.read(sum(result.outcomes.values()))
            summaries.append(summary)
            print(json.dumps(summary), flush=True)

    if args.url:
        go(args.url, [args.api_key])
    else:
        import tempfile

        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from testbed import TestBed

        with (
            tempfile.TemporaryDirectory(prefix="mcplane-testbed-") as tmp,
            TestBed(Path(tmp), audit_sink=args.audit) as bed,
        ):
            print(f"test bed up: {bed.lb_url}", file=sys.stderr)
            go(bed.lb_url, list(bed.api_keys), bed)
    if args.out:
        Path(args.out).write_text(json.dumps(summaries, indent=2) + "\n")
    return 0 if all(s["errors"] == 0 for s in summaries) else 1


if __name__ == "__main__":
    sys.exit(main())
