"""Hostile input, measured: what one bad request costs the server and everyone else.

For each case (the reported amplification and regex cases, plus a valid call of the same size)
against a plane and a gateway in front of it: the answer's size, how long the request took, how
the server's memory moved, and the latency of a ``/health`` probe polled from another connection
while it ran, next to the same probe on the idle server (ratios in one run; absolute times on a
noisy machine are indicative only).

    python bench/hostile.py [--out bench/RESULTS-hostile.md]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "tests" / "fuzz" / "hostile_app.py"
META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}

CASES: list[tuple[str, str, Any]] = [
    ("500,000 wrong items (3.4 MB)", "place", {"order": {"customer": "c", "items": list(range(500_000))}}),
    (
        "30,000 wrong items (1 MB)",
        "place",
        {"order": {"customer": "c", "items": [{"sku": i, "quantity": "x"} for i in range(30_000)]}},
    ),
    (
        "30,000 valid items (1 MB)",
        "place",
        {"order": {"customer": "c", "items": [{"sku": str(i), "quantity": i} for i in range(30_000)]}},
    ),
    ("pattern ^(a+)+$ on 40 a's and '!'", "spell", {"word": "a" * 40 + "!"}),
    ("nesting 300 deep", "echo", {"value": json.loads("[" * 300 + "]" * 300)}),
]


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(base: str, proc: subprocess.Popen[bytes], want: str | None = None) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            healthy = httpx.get(f"{base}/health", timeout=1).status_code == 200
            if healthy and (want is None or want in _post(base, "tools/list", {}).text):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise SystemExit("server did not start")


def _post(base: str, method: str, params: dict[str, Any], name: str | None = None) -> httpx.Response:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": {**params, "_meta": META}}).encode()
    headers = {
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": "2026-07-28",
        "mcp-method": method,
    }
    if name:
        headers["mcp-name"] = name
    return httpx.post(f"{base}/mcp", content=body, headers=headers, timeout=120)


def _probe(base: str, stop: threading.Event, out: list[float]) -> None:
    with httpx.Client(timeout=120) as client:
        while not stop.is_set():
            started = time.perf_counter()
            client.get(f"{base}/health")
            out.append(time.perf_counter() - started)
            stop.wait(0.005)


def _idle_probe(base: str, seconds: float = 1.0) -> list[float]:
    stop, out = threading.Event(), []
    thread = threading.Thread(target=_probe, args=(base, stop, out))
    thread.start()
    time.sleep(seconds)
    stop.set()
    thread.join()
    return out


def _measure(base: str, pid: int, tool: str, arguments: Any) -> dict[str, float]:
    process = psutil.Process(pid)
    rss_before = process.memory_info().rss
    stop, probes = threading.Event(), []
    thread = threading.Thread(target=_probe, args=(base, stop, probes))
    thread.start()
    started = time.perf_counter()
    response = _post(base, "tools/call", {"name": tool, "arguments": arguments}, name=tool)
    took = time.perf_counter() - started
    stop.set()
    thread.join()
    rss_peak = process.memory_info().rss
    return {
        "answer_bytes": len(response.content),
        "took_ms": took * 1000,
        "probe_p50_ms": statistics.median(probes) * 1000 if probes else float("nan"),
        "probe_max_ms": max(probes) * 1000 if probes else float("nan"),
        "probes": len(probes),
        "rss_delta_mb": (rss_peak - rss_before) / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "bench" / "RESULTS-hostile.md"))
    args = parser.parse_args()
    port = _free_port()
    plane = subprocess.Popen(
        [sys.executable, "-m", "mcplane.cli", "run", str(APP), "--transport", "http", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    gw_port = _free_port()
    gw_config = ROOT / "bench" / "out" / "hostile-gateway.yaml"
    gw_config.parent.mkdir(parents=True, exist_ok=True)
    gw_config.write_text(f"upstreams:\n  up:\n    endpoints: [{{url: 'http://127.0.0.1:{port}/mcp'}}]\n")
    gateway: subprocess.Popen[bytes] | None = None
    rows: list[str] = []
    try:
        plane_base = f"http://127.0.0.1:{port}"
        _wait(plane_base, plane)
        gateway = subprocess.Popen(
            [sys.executable, "-m", "mcplane.gateway.cli", "--config", str(gw_config), "--port", str(gw_port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        gw_base = f"http://127.0.0.1:{gw_port}"
        _wait(gw_base, gateway, want="up__place")
        for target, base, pid, prefix in (
            ("plane", plane_base, plane.pid, ""),
            ("gateway", gw_base, gateway.pid, "up__"),
        ):
            idle = _idle_probe(base)
            idle_p50 = statistics.median(idle) * 1000
            rows.append(f"| {target} | idle server | - | - | {idle_p50:.2f} | {max(idle) * 1000:.2f} | - |")
            for label, tool, arguments in CASES:
                m = _measure(base, pid, prefix + tool, arguments)
                probed = m["probes"] > 0
                p50 = f"{m['probe_p50_ms']:.2f}" if probed else "(none sent)"
                worst = f"{m['probe_max_ms']:.2f} ({m['probe_max_ms'] / idle_p50:.0f}x idle p50)" if probed else "-"
                rows.append(
                    f"| {target} | {label} | {m['answer_bytes']:,} | {m['took_ms']:.0f} | {p50} | {worst} "
                    f"| {m['rss_delta_mb']:+.0f} |"
                )
    finally:
        for proc in (plane, gateway):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=20)
    header = [
        "# Hostile input, measured",
        "",
        f"Generated by `python bench/hostile.py` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{psutil.cpu_count()} CPUs. One request per case against `tests/fuzz/hostile_app.py` served by "
        "`mcplane run` (plane) and by `mcplane gateway` in front of it (gateway); a `/health` probe polls "
        "from another connection while the request runs. Before the bounds (see docs/reliability.md), the "
        "500,000-item case answered 100 MB in 7.6 s on the plane (12-14 s through the gateway, `/health` "
        "as slow) and the pattern case froze the process for 6.4 s at 28 characters (doubling per character).",
        "",
        "| target | case | answer bytes | request ms | /health p50 ms | /health max ms | RSS Δ MB |",
        "|---|---|--:|--:|--:|--:|--:|",
    ]
    Path(args.out).write_text("\n".join([*header, *rows, ""]), encoding="utf-8")
    print("\n".join([*header, *rows]))


if __name__ == "__main__":
    main()
