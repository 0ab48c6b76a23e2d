"""In-process A/B of the HTTP hot path: server CPU per ``tools/call`` with no sockets and no load generator.

Drives the bench's echo Plane's ASGI app (``HTTPApp``, the same object ``mcplane run`` serves)
directly with the bench's request bytes, ``--concurrency`` calls at a time on one event loop,
and reports process CPU µs per call. Not a measurement of the server (uvicorn and the sockets
are missing): a quick, quiet way to tell whether a change to the hot path helps, to be
confirmed by ``run.py``. Run it twice, once with another checkout first on ``PYTHONPATH``::

    python bench/inproc.py --layers auth,authz,ratelimit,audit --calls 20000
    PYTHONPATH=/path/to/other/src python bench/inproc.py --layers ...
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "servers"))


async def _drive(app: Any, scope: dict[str, Any], bodies: list[bytes], concurrency: int) -> list[int]:
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

        await app(dict(scope), receive, send)

    queue = iter(bodies)

    async def worker() -> None:
        for body in queue:
            await one(body)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", default="", help="as servers/mcplane_server.py --layers")
    parser.add_argument("--fsync", default="interval")
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--profile", help="write a cProfile of the measured calls to this path")
    args = parser.parse_args()

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

    with fullpipe.pipeline_env():
        if args.layers:
            plane.configure(fullpipe.plane_config(fullpipe.parse_layers(args.layers), fsync=args.fsync))
        app = HTTPApp(plane, HTTPOptions(**plane.config.http_options()))
        headers = [
            (b"host", b"127.0.0.1:8000"),
            (b"accept", b"application/json, text/event-stream"),
            (b"content-type", b"application/json"),
            (b"mcp-protocol-version", PROTOCOL_MODERN.encode()),
            (b"mcp-method", b"tools/call"),
            (b"mcp-name", b"echo"),
        ]
        if "auth" in args.layers:
            headers.append((b"authorization", b"Bearer " + fullpipe.mint_token().encode()))
        template = modern_call()
        bodies = [template % (i, i) for i in range(args.calls)]
        warm = [template % (i, i) for i in range(2000)]
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
                statuses = await _drive(app, scope, warm, args.concurrency)
                assert set(statuses) == {200}, statuses[:5]
                if settle_heap is not None:
                    settle_heap()  # as the served process does once it is ready
                profiler = None
                if args.profile:
                    import cProfile

                    profiler = cProfile.Profile()
                    profiler.enable()
                cpu, wall = time.process_time(), time.perf_counter()
                statuses = await _drive(app, scope, bodies, args.concurrency)
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
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
                        }
                    ).decode()
                )

        uvloop.run(run())


if __name__ == "__main__":
    main()
