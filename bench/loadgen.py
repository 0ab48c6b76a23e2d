"""The load generator: one process, pinned to its own CPU, driving one server for one cell.

HTTP: ``concurrency`` persistent keep-alive HTTP/1.1 connections, each with one request in
flight. Requests are built by hand from byte templates and responses parsed by httptools (the
C parser uvicorn uses), all callback-driven on uvloop: no coroutine, future or dict per call.

stdio: spawns the server as a subprocess (pinned to the server CPU) and pipelines
newline-delimited JSON-RPC on its stdin/stdout with up to ``concurrency`` requests in flight.

With ``--auth`` every HTTP request carries ``Authorization: Bearer <JWT>``, a token minted once at
start with PyJWT from the run's secret and subject (``fullpipe.py``). ``--tool`` names the echo
tool (a gateway namespaces it); ``--aux-pid`` names a helper process of the cell (a proxy's
upstream, the span sink) whose CPU over the window is reported and not counted as other processes'.

Every response is checked: HTTP 200, the request's id, the echoed text, no JSON-RPC error, no
``isError``. Only responses that complete inside the measured window count; the window opens
after the warm-up and the server's CPU time (``/proc/<pid>/stat``) is read at both edges.
Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import httptools
import orjson

try:
    import uvloop
except ImportError:  # pragma: no cover - the bench extra installs it
    uvloop = None  # type: ignore[assignment]

CLK_TCK = os.sysconf("SC_CLK_TCK")
PROTOCOL_MODERN = "2026-07-28"
PROTOCOL_LEGACY = "2025-11-25"
CLIENT_INFO = {"name": "mcplane-bench", "version": "1"}
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": PROTOCOL_MODERN,
    "io.modelcontextprotocol/clientInfo": CLIENT_INFO,
    "io.modelcontextprotocol/clientCapabilities": {},
}
# The bodies the SDK client sends (captured from mcp 2.3.0), with %d holes for the id and text.
ENVELOPE_JSON = orjson.dumps(ENVELOPE)


def modern_call(tool: str = "echo") -> bytes:
    name = orjson.dumps(tool).replace(b"%", b"%%")
    return (
        b'{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":'
        + name
        + b',"arguments":{"text":"t%d"},"_meta":'
        + ENVELOPE_JSON.replace(b"%", b"%%")
        + b"}}"
    )


def legacy_call(tool: str = "echo") -> bytes:
    name = orjson.dumps(tool).replace(b"%", b"%%")
    return b'{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":' + name + b',"arguments":{"text":"t%d"}}}'


MODERN_CALL = modern_call()
LEGACY_CALL = legacy_call()
MAX_ERROR_SAMPLES = 5


# ----------------------------------------------------------------------------- helpers
def cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of ``pid`` (children excluded), in seconds."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    fields = data[data.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_busy_seconds(cpu: int | None) -> float | None:
    """Busy time (everything but idle and iowait) of one CPU since boot, from /proc/stat."""
    if cpu is None:
        return None
    prefix = f"cpu{cpu} ".encode()
    with open("/proc/stat", "rb") as f:
        for line in f:
            if line.startswith(prefix):
                ticks = [int(x) for x in line.split()[1:]]
                return (sum(ticks[:8]) - ticks[3] - ticks[4]) / CLK_TCK
    return None


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def pin_child(cpu: int | None) -> Callable[[], None]:
    """preexec_fn for a server: pin it to ``cpu`` and let it die with its parent."""

    def setup() -> None:
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG

    return setup


def percentile(sorted_ns: list[int], q: float) -> float:
    if not sorted_ns:
        return float("nan")
    index = min(len(sorted_ns) - 1, max(0, round(q * (len(sorted_ns) - 1))))
    return sorted_ns[index] / 1e6


def check_message(message: Any, expected_id: int) -> str | None:
    """None when ``message`` is the right echo answer for ``expected_id``, else what is wrong."""
    if not isinstance(message, dict):
        return "not a JSON object"
    if message.get("id") != expected_id:
        return f"wrong id {message.get('id')!r} (expected {expected_id})"
    if "error" in message:
        return f"JSON-RPC error {message['error']!r}"
    result = message.get("result")
    if not isinstance(result, dict):
        return "no result"
    if result.get("isError"):
        return f"isError result {result!r}"
    try:
        text = result["content"][0]["text"]
    except (KeyError, IndexError, TypeError):
        return f"no text content in {result!r}"
    if text != f"t{expected_id}":
        return f"echoed {text!r}, expected 't{expected_id}'"
    return None


def parse_sse(body: bytes, expected_id: int) -> Any:
    """The JSON-RPC message an SSE body carries for ``expected_id`` (priming and other events skipped)."""
    found: Any = None
    for event in body.replace(b"\r\n", b"\n").split(b"\n\n"):
        data = b"\n".join(line[5:].lstrip(b" ") for line in event.split(b"\n") if line.startswith(b"data:"))
        if not data:
            continue
        message = orjson.loads(data)
        if isinstance(message, dict) and "id" in message:
            found = message
            if message.get("id") == expected_id:
                return message
    return found


class Stats:
    """Counts and latencies of the measured window; errors of every phase."""

    def __init__(self) -> None:
        self.recording = False
        self.latencies: list[int] = []
        self.errors = 0
        self.window_errors = 0
        self.error_samples: list[str] = []

    def error(self, what: str) -> None:
        self.errors += 1
        if self.recording:
            self.window_errors += 1
        if len(self.error_samples) < MAX_ERROR_SAMPLES:
            self.error_samples.append(what)


# ----------------------------------------------------------------------------- HTTP
class HTTPConnection(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight; callback-driven."""

    def __init__(self, gen: HTTPLoad) -> None:
        self.gen = gen
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.body: list[bytes] = []
        self.sse = False
        self.session_id: str | None = None
        self.expected_id = 0
        self.sent_at = 0
        self.busy = False
        self.closed = asyncio.get_running_loop().create_future()
        self.on_response: Callable[[HTTPConnection, int, bytes], None] = gen.on_response

    # asyncio protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.gen.stats.error(f"unparseable HTTP response: {exc}")
            self.busy = False
            if self.transport is not None:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        self.transport = None
        self.gen.lost(self)

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.body = []
        self.sse = False

    def on_header(self, name: bytes, value: bytes) -> None:
        lower = name.lower()
        if lower == b"content-type":
            self.sse = value.startswith(b"text/event-stream")
        elif lower == b"mcp-session-id":
            self.session_id = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.busy = False
        self.on_response(self, self.parser.get_status_code(), b"".join(self.body))

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.busy = True
        self.transport.write(data)


class HTTPLoad:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.stats = Stats()
        self.running = False
        self.next_id = 0
        self.connections: list[HTTPConnection] = []
        self.idle = asyncio.Event()
        self.reconnects = 0
        host = f"127.0.0.1:{args.port}".encode()
        common = (
            b"POST /mcp HTTP/1.1\r\nHost: " + host + b"\r\n"
            b"Accept: application/json, text/event-stream\r\nContent-Type: application/json\r\n"
        )
        if args.auth:
            # A valid HS256 token minted once, at start (see fullpipe.py); on every request of both
            # HTTP legs, the session's initialize and notifications/initialized included.
            from fullpipe import mint_token

            common += b"Authorization: Bearer " + mint_token().encode("ascii") + b"\r\n"
        self.common = common
        if args.leg == "http-2026":
            self.body_template = modern_call(args.tool)
            self.head_template = (
                common + b"MCP-Protocol-Version: " + PROTOCOL_MODERN.encode() + b"\r\n"
                b"Mcp-Method: tools/call\r\nMcp-Name: " + args.tool.encode() + b"\r\nContent-Length: %d\r\n\r\n"
            )
        else:
            self.body_template = legacy_call(args.tool)
            self.head_template = b""  # set once the session exists

    # ------------------------------------------------------------ setup (not timed)
    async def connect(self) -> HTTPConnection:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(lambda: HTTPConnection(self), "127.0.0.1", self.args.port)
        return conn

    async def exchange(self, conn: HTTPConnection, request: bytes) -> tuple[int, bytes]:
        done: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()

        def got(_: HTTPConnection, status: int, body: bytes) -> None:
            if not done.done():
                done.set_result((status, body))

        conn.on_response = got
        conn.write(request)
        try:
            return await asyncio.wait_for(done, 30)
        finally:
            conn.on_response = self.on_response

    def post(self, body: bytes, headers: bytes = b"") -> bytes:
        return self.common + headers + b"Content-Length: %d\r\n\r\n" % len(body) + body

    async def open_session(self, conn: HTTPConnection) -> None:
        init = orjson.dumps(
            {
                "jsonrpc": "2.0",
                "id": 0,
                "method": "initialize",
                "params": {"protocolVersion": PROTOCOL_LEGACY, "capabilities": {}, "clientInfo": CLIENT_INFO},
            }
        )
        status, body = await self.exchange(conn, self.post(init))
        if status != 200 or conn.session_id is None:
            raise RuntimeError(f"initialize failed: HTTP {status}, session {conn.session_id!r}: {body[:300]!r}")
        session = conn.session_id.encode()
        headers = b"Mcp-Session-Id: " + session + b"\r\nMCP-Protocol-Version: " + PROTOCOL_LEGACY.encode() + b"\r\n"
        status, body = await self.exchange(
            conn, self.post(b'{"jsonrpc":"2.0","method":"notifications/initialized"}', headers)
        )
        if status not in (200, 202):
            raise RuntimeError(f"notifications/initialized failed: HTTP {status}: {body[:300]!r}")
        self.head_template = self.common + headers + b"Content-Length: %d\r\n\r\n"
        self.session = session

    # ------------------------------------------------------------ hot path
    def send(self, conn: HTTPConnection) -> None:
        self.next_id += 1
        rid = self.next_id
        body = self.body_template % (rid, rid)
        conn.expected_id = rid
        conn.sent_at = time.perf_counter_ns()
        conn.write(self.head_template % len(body) + body)

    def on_response(self, conn: HTTPConnection, status: int, body: bytes) -> None:
        now = time.perf_counter_ns()
        stats = self.stats
        if status != 200:
            stats.error(f"HTTP {status}: {body[:200]!r}")
        else:
            try:
                message = parse_sse(body, conn.expected_id) if conn.sse else orjson.loads(body)
                problem = check_message(message, conn.expected_id)
            except orjson.JSONDecodeError as exc:
                problem = f"bad JSON ({exc}): {body[:200]!r}"
            if problem is not None:
                stats.error(problem)
            elif stats.recording:
                stats.latencies.append(now - conn.sent_at)
        if self.running and conn.transport is not None:
            self.send(conn)
        elif not any(c.busy for c in self.connections):
            self.idle.set()

    def lost(self, conn: HTTPConnection) -> None:
        if conn.busy:
            conn.busy = False
            self.stats.error("connection closed with a request in flight")
        if self.running:
            self.reconnects += 1
            asyncio.get_running_loop().create_task(self.replace(conn))
        elif not any(c.busy for c in self.connections):
            self.idle.set()

    async def replace(self, old: HTTPConnection) -> None:
        try:
            conn = await self.connect()
        except OSError as exc:
            self.stats.error(f"reconnect failed: {exc}")
            return
        self.connections[self.connections.index(old)] = conn
        if self.running:
            self.send(conn)

    async def run(self) -> dict[str, Any]:
        args = self.args
        self.connections = [await self.connect() for _ in range(args.concurrency)]
        if args.leg == "http-2025":
            await self.open_session(self.connections[0])
        return await measure(self, args, start=self.start, stop=self.stop, drained=self.drained)

    def start(self) -> None:
        self.running = True
        for conn in self.connections:
            self.send(conn)

    def stop(self) -> None:
        self.running = False
        if not any(c.busy for c in self.connections):
            self.idle.set()

    async def drained(self) -> None:
        await self.idle.wait()
        for conn in self.connections:
            if conn.transport is not None:
                conn.transport.close()


# ----------------------------------------------------------------------------- stdio
class StdioPipe(asyncio.Protocol):
    def __init__(self, gen: StdioLoad) -> None:
        self.gen = gen
        self.buffer = b""
        self.eof = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        if self.buffer:
            data = self.buffer + data
        *lines, self.buffer = data.split(b"\n")
        on_line = self.gen.on_line
        for line in lines:
            on_line(line)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.eof.done():
            self.eof.set_result(None)
        self.gen.server_gone()


class StdioLoad:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.stats = Stats()
        self.running = False
        self.next_id = 0
        self.in_flight: dict[int, int] = {}
        self.idle = asyncio.Event()
        self.waiters: dict[int, asyncio.Future[Any]] = {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.writer: asyncio.WriteTransport | None = None
        self.modern = args.leg == "stdio"
        self.template = (MODERN_CALL if self.modern else LEGACY_CALL) + b"\n"

    def server_pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def handshake(self) -> None:
        loop = asyncio.get_running_loop()
        if self.modern:
            first: dict[str, Any] = {
                "jsonrpc": "2.0",
                "id": 0,
                "method": "server/discover",
                "params": {"_meta": ENVELOPE},
            }
        else:
            first = {
                "jsonrpc": "2.0",
                "id": 0,
                "method": "initialize",
                "params": {"protocolVersion": PROTOCOL_LEGACY, "capabilities": {}, "clientInfo": CLIENT_INFO},
            }
        answer = self.waiters[0] = loop.create_future()
        assert self.writer is not None
        self.writer.write(orjson.dumps(first) + b"\n")
        message = await asyncio.wait_for(answer, self.args.ready_timeout)
        if not isinstance(message, dict) or "result" not in message:
            raise RuntimeError(f"{first['method']} failed: {message!r}")
        if not self.modern:
            self.writer.write(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')

    def send(self) -> None:
        self.next_id += 1
        rid = self.next_id
        self.in_flight[rid] = time.perf_counter_ns()
        assert self.writer is not None
        self.writer.write(self.template % (rid, rid))

    def on_line(self, line: bytes) -> None:
        now = time.perf_counter_ns()
        if not line.strip():
            return
        stats = self.stats
        try:
            message = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            stats.error(f"bad JSON line ({exc}): {line[:200]!r}")
            return
        rid = message.get("id") if isinstance(message, dict) else None
        if rid is None:
            return  # a notification: not an answer
        waiter = self.waiters.pop(rid, None) if rid == 0 else None
        if waiter is not None:
            waiter.set_result(message)
            return
        sent_at = self.in_flight.pop(rid, None) if isinstance(rid, int) else None
        if sent_at is None:
            stats.error(f"answer for unknown id {rid!r}: {line[:200]!r}")
            return
        problem = check_message(message, rid)
        if problem is not None:
            stats.error(problem)
        elif stats.recording:
            stats.latencies.append(now - sent_at)
        if self.running:
            self.send()
        elif not self.in_flight:
            self.idle.set()

    def server_gone(self) -> None:
        if self.in_flight:
            self.stats.error(f"server closed stdout with {len(self.in_flight)} requests in flight")
            self.in_flight.clear()
        for waiter in self.waiters.values():
            if not waiter.done():
                waiter.set_exception(RuntimeError("server exited before answering"))
        self.running = False
        self.idle.set()

    async def run(self) -> dict[str, Any]:
        args = self.args
        loop = asyncio.get_running_loop()
        log = open(args.server_log, "ab") if args.server_log else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(
                args.server_cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                preexec_fn=pin_child(args.server_cpu),
            )
        finally:
            if log is not subprocess.DEVNULL:
                log.close()
        if args.pid_file:
            with open(args.pid_file, "w") as f:
                f.write(f"{self.proc.pid}\n")
        try:
            assert self.proc.stdin is not None
            assert self.proc.stdout is not None
            self.writer, _ = await loop.connect_write_pipe(asyncio.Protocol, self.proc.stdin)
            await loop.connect_read_pipe(lambda: StdioPipe(self), self.proc.stdout)
            await self.handshake()
            return await measure(self, args, start=self.start, stop=self.stop, drained=self.idle.wait)
        finally:
            await self.shutdown()

    def start(self) -> None:
        self.running = True
        for _ in range(self.args.concurrency):
            self.send()

    def stop(self) -> None:
        self.running = False
        if not self.in_flight:
            self.idle.set()

    async def shutdown(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if self.writer is not None:
            self.writer.close()  # EOF on the server's stdin: a clean exit
        try:
            await asyncio.wait_for(asyncio.to_thread(proc.wait), 5)
        except TimeoutError:
            proc.terminate()
            try:
                await asyncio.wait_for(asyncio.to_thread(proc.wait), 5)
            except TimeoutError:
                proc.kill()
                proc.wait()


# ----------------------------------------------------------------------------- the window
async def measure(
    gen: HTTPLoad | StdioLoad,
    args: argparse.Namespace,
    *,
    start: Callable[[], None],
    stop: Callable[[], None],
    drained: Callable[[], Any],
) -> dict[str, Any]:
    pid = gen.server_pid() if isinstance(gen, StdioLoad) else args.server_pid
    stats = gen.stats
    loop = asyncio.get_running_loop()
    edges: dict[str, float] = {}

    server_core = args.server_cpu
    load_core = args.load_cpu

    aux_pids: list[int] = args.aux_pid or []

    def open_window() -> None:
        edges["server_core0"] = cpu_busy_seconds(server_core) or 0.0
        edges["load_core0"] = cpu_busy_seconds(load_core) or 0.0
        edges["server_cpu0"] = cpu_seconds(pid)
        edges["aux_cpu0"] = sum(cpu_seconds(aux) for aux in aux_pids)
        edges["load_cpu0"] = own_cpu_seconds()
        edges["t0"] = time.perf_counter()
        stats.recording = True

    def close_window() -> None:
        stats.recording = False
        edges["t1"] = time.perf_counter()
        edges["server_cpu1"] = cpu_seconds(pid)
        edges["aux_cpu1"] = sum(cpu_seconds(aux) for aux in aux_pids)
        edges["load_cpu1"] = own_cpu_seconds()
        edges["server_core1"] = cpu_busy_seconds(server_core) or 0.0
        edges["load_core1"] = cpu_busy_seconds(load_core) or 0.0
        stop()

    window_closed = loop.create_future()
    start()
    loop.call_later(args.warmup, open_window)
    loop.call_later(args.warmup + args.duration, lambda: (close_window(), window_closed.set_result(None)))
    await window_closed
    drain_timeout = False
    try:
        await asyncio.wait_for(drained(), 15)
    except TimeoutError:
        drain_timeout = True
        stats.error("requests still unanswered 15 s after the window closed")
    wall = edges["t1"] - edges["t0"]
    server_cpu = edges["server_cpu1"] - edges["server_cpu0"]
    load_cpu = edges["load_cpu1"] - edges["load_cpu0"]
    aux_cpu = edges["aux_cpu1"] - edges["aux_cpu0"]
    # Whatever else kept the two CPUs busy during the window: other processes on this machine
    # (the cell's own helper processes, ``--aux-pid``, are not "other").
    foreign = None
    if server_core is not None and load_core is not None and wall > 0:
        busy = (edges["server_core1"] - edges["server_core0"]) + (edges["load_core1"] - edges["load_core0"])
        foreign = max(0.0, busy - server_cpu - load_cpu - aux_cpu) / wall
    latencies = sorted(stats.latencies)
    calls = len(latencies)
    return {
        "calls": calls,
        "wall_s": wall,
        "calls_per_s": calls / wall if wall > 0 else 0.0,
        "server_cpu_s": server_cpu,
        "calls_per_cpu_s": calls / server_cpu if server_cpu > 0 else None,
        "server_cpu_util": server_cpu / wall if wall > 0 else None,
        "load_cpu_util": load_cpu / wall if wall > 0 else None,
        "aux_cpu_s": aux_cpu if aux_pids else None,
        "aux_cpu_util": aux_cpu / wall if aux_pids and wall > 0 else None,
        "foreign_cpu_util": foreign,
        "p50_ms": percentile(latencies, 0.50),
        "p90_ms": percentile(latencies, 0.90),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": latencies[-1] / 1e6 if latencies else float("nan"),
        "errors": stats.errors,
        "window_errors": stats.window_errors,
        "error_samples": stats.error_samples,
        "drain_timeout": drain_timeout,
        "reconnects": getattr(gen, "reconnects", 0),
        "requests_sent": gen.next_id,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leg", choices=("http-2026", "http-2025", "stdio", "stdio-2025"), required=True)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--port", type=int, help="HTTP legs: the server's port")
    parser.add_argument("--server-pid", type=int, help="HTTP legs: the server's pid (for its CPU time)")
    parser.add_argument("--load-cpu", type=int, help="pin this process to this CPU")
    parser.add_argument("--server-cpu", type=int, help="the server's CPU (stdio legs: pin the spawned server to it)")
    parser.add_argument("--server-log", help="stdio legs: append the server's stderr here")
    parser.add_argument("--pid-file", help="stdio legs: write the spawned server's pid here (for a profiler)")
    parser.add_argument("--ready-timeout", type=float, default=60.0)
    parser.add_argument(
        "--auth",
        action="store_true",
        help="HTTP legs: send `Authorization: Bearer <JWT>` minted from MCPLANE_BENCH_JWT_SECRET/_SUBJECT",
    )
    parser.add_argument("--tool", default="echo", help="HTTP legs: the echo tool's name on this server")
    parser.add_argument(
        "--aux-pid",
        type=int,
        action="append",
        help="a helper process of the cell (an upstream, a span sink): its CPU over the window is reported "
        "(aux_cpu_s) and not counted as other processes' (repeatable)",
    )
    parser.add_argument("server_cmd", nargs="*", help="stdio legs: the server command line")
    args = parser.parse_args()
    if args.load_cpu is not None:
        os.sched_setaffinity(0, {args.load_cpu})
    gen: HTTPLoad | StdioLoad

    async def go() -> dict[str, Any]:
        nonlocal gen
        gen = StdioLoad(args) if args.leg.startswith("stdio") else HTTPLoad(args)
        return await gen.run()

    result = uvloop.run(go()) if uvloop is not None else asyncio.run(go())
    result["event_loop"] = "uvloop" if uvloop is not None else "asyncio"
    sys.stdout.write(orjson.dumps(result).decode() + "\n")


if __name__ == "__main__":
    main()
