"""In-process A/B of the HTTP hot path: server CPU per ``tools/call`` with no sockets and no load generator.

Drives the bench's echo Plane's ASGI app (``HTTPApp``, the same object ``mcplane run`` serves)
directly with the bench's request bytes, ``--concurrency`` calls at a time on one event loop,
and reports process CPU µs per call. Not a measurement of the server (uvicorn and the sockets
are missing): a quick, quiet way to tell whether a change to the hot path helps, to be
confirmed by ``run.py``. Run it twice, once with another checkout first on ``PYTHONPATH``::

    python bench/inproc.py --layers auth,authz,ratelimit,audit --calls 20000
    PYTHONPATH=/path/to/other/src python bench/inproc.py --layers ...

``--gateway`` drives a gateway Plane instead (``Gateway.from_config``, as
``servers/gateway_server.py`` builds it) whose upstream is the bench's echo Plane served by
uvicorn in a subprocess: the CPU per call is then the gateway's alone (the upstream's is in the
other process), the caller's envelope the bench's 2026-07-28 call of ``bench__echo``;
``--probe-interval`` moves the upstream's health probe out of the measured calls;
``--in-memory now|later`` answers the gateway's upstream requests from memory (the pool's
connection fed the echo's answer at once, or a loop turn later) so no socket or other process
is in the figure.

Instruction counts: run under ``valgrind --tool=callgrind --instr-atstart=no`` with
``--callgrind`` (only the measured calls are instrumented) and take the difference of two runs
with different ``--calls``. ``--profile-clock cpu`` makes ``--profile`` count this process's CPU
time instead of wall time (a socket write then counts only its own cost, not the upstream's run).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "servers"))


async def _drive(
    app: Any, scope: dict[str, Any], bodies: list[bytes], concurrency: int, answers: list[bytes] | None = None
) -> list[int]:
    statuses: list[int] = []

    async def one(body: bytes) -> None:
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # never disconnects
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])
            elif answers is not None and message["type"] == "http.response.body":
                answers.append(message.get("body", b""))

        await app(dict(scope), receive, send)

    queue = iter(bodies)

    async def worker() -> None:
        for body in queue:
            await one(body)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


class _LoopCount(asyncio.SelectorEventLoop):
    """An asyncio loop that counts its iterations (each is one wake-up: a select and its callbacks)."""

    count = 0

    def _run_once(self) -> None:
        _LoopCount.count += 1
        super()._run_once()  # pyright: ignore[reportAttributeAccessIssue]


@contextlib.contextmanager
def _upstream() -> Any:
    """The bench's echo Plane under uvicorn in a subprocess; yields its URL."""
    process = subprocess.Popen(
        [sys.executable, str(HERE / "servers" / "mcplane_server.py")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("LISTENING "):
            raise SystemExit(f"the upstream did not start: {line!r}")
        yield f"http://127.0.0.1:{int(line.split()[1])}/mcp"
    finally:
        process.terminate()
        process.wait(10)


class _AnsweringTransport:
    """A raw pool connection's transport that answers each request at once, as the echo upstream
    would (``--in-memory``): the gateway's pool, parser, lane, forward and hot path run, no socket."""

    _ID = re.compile(rb'"id":(\d+)')
    _TEXT = re.compile(rb'"text":"([^"\\]*)"')
    _RESULT = (
        b'{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":"%s"}],'
        b'"structuredContent":{"result":"%s"},"isError":false,"resultType":"complete",'
        b'"_meta":{"io.modelcontextprotocol/serverInfo":{"name":"bench","version":"0.1.0"}}}}'
    )

    def __init__(self, conn: Any, later: bool) -> None:
        self.conn, self.later = conn, later

    def write(self, data: bytes) -> None:
        request_id, text = self._ID.search(data), self._TEXT.search(data)
        assert request_id is not None, data[:300]
        assert text is not None, data[:300]
        body = self._RESULT % (request_id[1], text[1], text[1])
        answer = (
            b"HTTP/1.1 200 OK\r\ndate: Mon, 07 Dec 2026 00:00:00 GMT\r\nserver: uvicorn\r\n"
            b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
        )
        if self.later:  # the answer comes a loop turn later: the call suspends, as on a socket
            asyncio.get_running_loop().call_soon(self.conn.data_received, answer)
        else:
            self.conn.data_received(answer)

    def abort(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _in_memory(provider: Any, later: bool) -> None:
    """Put one connection answering in memory in each lean lane's raw pool (``--in-memory``)."""
    from mcplane.gateway.pool import _Connection  # pyright: ignore[reportPrivateUsage]

    for upstream in provider.upstreams.values():
        for endpoint in upstream.endpoints:
            for modern in (True, False):
                link = endpoint.link(modern_caller=modern)
                lane = link.lane if link is not None else None
                if lane is None or lane.pool is None:
                    raise SystemExit("--in-memory needs the lean lane's raw pool")
                conn = _Connection(asyncio.get_running_loop())
                conn.transport = _AnsweringTransport(conn, later)  # pyright: ignore[reportAttributeAccessIssue]
                lane.pool.idle[:] = [conn]


def _instrument(on: bool) -> None:
    """Switch callgrind's instrumentation of this process on or off (``callgrind_control -i``)."""
    subprocess.run(
        ["callgrind_control", "-i", "on" if on else "off", str(os.getpid())], check=True, capture_output=True
    )


def _gateway_plane(upstream: str, probe_interval: float | None = None) -> Any:
    import yaml
    from gateway_server import gateway_yaml

    from mcplane.gateway import Gateway

    config = yaml.safe_load(gateway_yaml(upstream))
    if probe_interval is not None:  # the upstream's health probe (a tools/list) out of the measured calls
        for upstream_config in config["upstreams"].values():
            upstream_config["health_check"] = {"interval": probe_interval}
    return Gateway.from_config(config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", default="", help="as servers/mcplane_server.py --layers")
    parser.add_argument("--fsync", default="interval")
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--warm", type=int, default=2000, help="calls before the measured ones")
    parser.add_argument("--profile", help="write a cProfile of the measured calls to this path")
    parser.add_argument(
        "--profile-clock",
        choices=("wall", "cpu"),
        default="wall",
        help="the profile's clock: wall time, or this process's CPU time (a socket write that wakes the "
        "upstream then counts only its own cost)",
    )
    parser.add_argument("--gateway", action="store_true", help="a gateway Plane in front of an echo Plane upstream")
    parser.add_argument(
        "--callgrind",
        action="store_true",
        help="under valgrind --tool=callgrind --instr-atstart=no: instrument the measured calls only",
    )
    parser.add_argument(
        "--probe-interval",
        type=float,
        help="with --gateway: seconds between the upstream's health probes (a long one keeps them out of a count)",
    )
    parser.add_argument(
        "--in-memory",
        choices=("now", "later"),
        help="with --gateway: the upstream's answers come from memory (at once, or a loop turn later), "
        "not the socket: the gateway's own CPU alone",
    )
    parser.add_argument("--wakeups", action="store_true", help="also count event-loop iterations per call")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        upstream = stack.enter_context(_upstream()) if args.gateway else None
        _main(args, upstream)


def _main(args: argparse.Namespace, upstream: str | None) -> None:

    import fullpipe
    import orjson
    import uvloop
    from loadgen import PROTOCOL_MODERN, modern_call

    from mcplane import Plane
    from mcplane.transports import serve
    from mcplane.transports.http import HTTPApp, HTTPOptions

    settle_heap = getattr(serve, "settle_heap", None)

    plane = Plane("bench")

    @plane.tool()
    async def echo(text: str) -> str:  # pyright: ignore[reportUnusedFunction]
        """Echo the text back."""
        return text

    if upstream is not None:
        plane = _gateway_plane(upstream, args.probe_interval)
    with fullpipe.pipeline_env():
        if args.layers:
            layers = fullpipe.parse_layers(args.layers)
            plane.configure(fullpipe.plane_config(layers, fsync=args.fsync))
            fullpipe.install_floor(plane, layers)
        app = HTTPApp(plane, HTTPOptions(**plane.config.http_options()))
        headers = [
            (b"host", b"127.0.0.1:8000"),
            (b"accept", b"application/json, text/event-stream"),
            (b"content-type", b"application/json"),
            (b"mcp-protocol-version", PROTOCOL_MODERN.encode()),
            (b"mcp-method", b"tools/call"),
            (b"mcp-name", b"bench__echo" if upstream is not None else b"echo"),
        ]
        if "auth" in args.layers:
            headers.append((b"authorization", b"Bearer " + fullpipe.mint_token().encode()))
        template = modern_call("bench__echo" if upstream is not None else "echo")
        bodies = [template % (i, i) for i in range(args.calls)]
        warm = [template % (i, i) for i in range(args.warm)]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/mcp",
            "raw_path": b"/mcp",
            "root_path": "",
            "query_string": b"",
            "headers": headers,
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
            "state": {},
        }

        async def run() -> None:
            async with app.running():
                if upstream is not None:  # the upstream connects in the background
                    from mcplane.gateway import Gateway

                    provider = Gateway.provider_of(plane)
                    deadline = time.monotonic() + 600
                    while not all(u.healthy() and u.catalog.tools for u in provider.upstreams.values()):
                        if time.monotonic() > deadline:
                            raise SystemExit("the upstream did not connect")
                        await asyncio.sleep(0.05)
                    if args.in_memory:
                        _in_memory(provider, args.in_memory == "later")
                answers: list[bytes] = []
                statuses = await _drive(app, scope, warm, args.concurrency, answers)
                assert set(statuses) == {200}, statuses[:5]
                wrong = [a for a in answers if b'"result":{' not in a or b'"isError":true' in a]
                assert not wrong, wrong[0][:300]
                if settle_heap is not None:
                    settle_heap()  # as the served process does once it is ready
                profiler = None
                if args.profile:
                    import cProfile

                    profiler = (
                        cProfile.Profile(time.process_time) if args.profile_clock == "cpu" else cProfile.Profile()
                    )
                    profiler.enable()
                if args.callgrind:
                    _instrument(True)
                iterations = _LoopCount.count
                times = os.times()
                cpu, wall = time.process_time(), time.perf_counter()
                statuses = await _drive(app, scope, bodies, args.concurrency)
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                iterations = _LoopCount.count - iterations
                if args.callgrind:
                    _instrument(False)
                times = os.times()[:2], times[:2]
                user, system = (now - then for now, then in zip(*times, strict=True))
                if profiler is not None:
                    profiler.disable()
                    profiler.dump_stats(args.profile)
                assert set(statuses) == {200}, statuses[:5]
                print(
                    orjson.dumps(
                        {
                            "layers": args.layers or "bare",
                            "calls": len(bodies),
                            "cpu_us_per_call": round(cpu / len(bodies) * 1e6, 1),
                            "wall_us_per_call": round(wall / len(bodies) * 1e6, 1),
                            "user_us_per_call": round(user / len(bodies) * 1e6, 1),
                            "sys_us_per_call": round(system / len(bodies) * 1e6, 1),
                            **(
                                {"loop_iterations_per_call": round(iterations / len(bodies), 2)} if args.wakeups else {}
                            ),
                        }
                    ).decode()
                )

        if args.wakeups:  # asyncio's own loop, its iterations counted (uvloop's cannot be)
            with asyncio.Runner(loop_factory=_LoopCount) as runner:
                runner.run(run())
        else:
            uvloop.run(run())


if __name__ == "__main__":
    main()
