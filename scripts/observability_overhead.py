"""What metrics, call logs and tracing cost per call: each setting against everything off, in one run.

    python scripts/observability_overhead.py               # in-process, through plane.dispatch
    python scripts/observability_overhead.py --http        # also over HTTP: mcplane run + a load loop

In-process, one trivial tool (``add``) is called through the whole pipeline (``plane.dispatch``,
as the hot path does) in interleaved rounds, so every setting sees the same machine state; the
table gives the median microseconds per call over the rounds and the ratio to "off". Call logs
are written as JSON lines to /dev/null (formatting and the write are counted); spans go through
a BatchSpanProcessor to an exporter that drops them (the export itself is off the call path).
Over HTTP, a server is started per setting and hit by a keep-alive client with a few concurrent
requests; it reports requests per second (the Python client limits the absolute numbers; the
ratio is what matters). docs/operations.md quotes the results.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parents[1]
SERVE = [sys.executable, "-m", "mcplane.cli", "run"]
SETTINGS: dict[str, dict[str, Any]] = {
    "off": {"log_level": "warning", "metrics": {"enabled": False}},
    "metrics": {"log_level": "warning"},
    "metrics+logs": {"log_level": "info"},
    "metrics+logs+tracing": {"log_level": "info", "tracing": {"enabled": True}},
}
APP = """
from mcplane import Plane

plane = Plane("overhead")


@plane.tool()
async def add(a: int, b: int) -> int:
    return a + b
"""


def _drop_spans_provider(*_: Any, **__: Any) -> Any:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Drop(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Drop()))
    return provider


async def _per_call_us(setting: dict[str, Any], calls: int) -> float:
    from mcplane import Plane
    from mcplane.config import PlaneConfig
    from mcplane.pipeline import Call

    logging.getLogger("mcplane").setLevel(setting.get("log_level", "info").upper())
    plane = Plane("overhead", config=PlaneConfig.model_validate({"observability": setting}))

    @plane.tool()
    async def add(a: int, b: int) -> int:  # async: a sync tool's thread hop would swamp the measurement
        return a + b

    policy = plane.policy_for("add")
    arguments = {"a": 1, "b": 2}
    async with plane.lifespan():
        for _ in range(200):  # warm up
            await plane.dispatch(Call("tool", "add", arguments, plane.make_context(None, None), policy))
        started = time.perf_counter()
        for _ in range(calls):
            await plane.dispatch(Call("tool", "add", arguments, plane.make_context(None, None), policy))
        return (time.perf_counter() - started) / calls * 1e6


def in_process(rounds: int, calls: int) -> dict[str, float]:
    from mcplane.observability import configure_logging, tracing

    tracing.build_tracer_provider = _drop_spans_provider  # spans dropped, not sent anywhere
    devnull = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the measurement
    configure_logging("info", "json", stream=devnull)
    samples: dict[str, list[float]] = {name: [] for name in SETTINGS}
    for _ in range(rounds):
        for name, setting in SETTINGS.items():
            samples[name].append(anyio.run(_per_call_us, setting, calls))
    return {name: statistics.median(values) for name, values in samples.items()}


def _wait_healthy(base: str, proc: subprocess.Popen[bytes]) -> None:
    import httpx

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        try:
            proc.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            continue
    raise SystemExit("server did not start")


async def _load(base: str, seconds: float, concurrency: int) -> float:
    import httpx

    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {
            "name": "add",
            "arguments": {"a": 1, "b": 2},
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
            },
        },
    }
    headers = {
        "content-type": "application/json",
        "accept": "application/json",
        "mcp-protocol-version": "2026-07-28",
        "mcp-method": "tools/call",
        "mcp-name": "add",
    }
    done = 0
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        for _ in range(50):
            await http.post("/mcp", json=body, headers=headers)
        stop = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < stop:
                response = await http.post("/mcp", json=body, headers=headers)
                assert response.status_code == 200
                done += 1

        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(concurrency):
                tg.start_soon(worker)
        return done / (time.perf_counter() - started)


def over_http(rounds: int, seconds: float, concurrency: int) -> dict[str, float]:
    import yaml

    workdir = Path(tempfile.mkdtemp(prefix="mcplane-overhead-"))
    app = workdir / "app.py"
    app.write_text(APP, encoding="utf-8")
    samples: dict[str, list[float]] = {name: [] for name in SETTINGS}
    port = 18000 + os.getpid() % 1000
    for _ in range(rounds):
        for name, setting in SETTINGS.items():
            if "tracing" in setting:
                continue  # needs a collector to send to; measured in-process
            config = workdir / f"{name}.yaml"
            config.write_text(yaml.safe_dump({"observability": setting}), encoding="utf-8")
            with open(os.devnull, "wb") as sink:
                proc = subprocess.Popen(
                    [*SERVE, str(app), "--transport", "http", "--port", str(port), "--config", str(config)],
                    cwd=ROOT,
                    stdout=subprocess.DEVNULL,
                    stderr=sink,
                )
                try:
                    base = f"http://127.0.0.1:{port}"
                    _wait_healthy(base, proc)
                    samples[name].append(anyio.run(_load, base, seconds, concurrency))
                finally:
                    proc.terminate()
                    proc.wait(timeout=30)
    return {name: statistics.median(values) for name, values in samples.items() if values}


def _table(title: str, unit: str, results: dict[str, float], better: Callable[[float, float], float]) -> None:
    base = results["off"]
    print(f"\n{title}")
    print(f"| setting | {unit} | vs off |")
    print("|---|---:|---:|")
    for name, measured in results.items():
        print(f"| {name} | {measured:,.1f} | {better(measured, base):.3f} |")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=20_000, help="in-process calls per setting and round")
    parser.add_argument("--http", action="store_true", help="also measure over HTTP (one server per setting)")
    parser.add_argument("--seconds", type=float, default=3.0, help="HTTP load per setting and round")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args(argv)
    results = in_process(args.rounds, args.calls)
    _table("In-process (plane.dispatch), median of rounds", "µs/call", results, lambda m, b: m / b)
    if args.http:
        served = over_http(max(1, args.rounds // 2), args.seconds, args.concurrency)
        _table("HTTP (mcplane run, hot path), median of rounds", "calls/s", served, lambda m, b: m / b)
    return 0


if __name__ == "__main__":
    sys.exit(main())
