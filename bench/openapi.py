"""OpenAPI upstreams: GitHub's document into tools, and one tool call, mcplane vs FastMCP vs direct httpx.

    python bench/openapi.py                 # appends/replaces the "OpenAPI upstreams" section of bench/RESULTS.md
    python bench/openapi.py --calls 2000 --repeat 5

(a) Load: GitHub's published document (npm @octokit/openapi 23.0.2, ``.tools/openapi``, installed by
scripts/install-test-deps.sh) turned into tools, each implementation in a fresh process: wall time
(reading and parsing the file included) and the process's peak RSS growth over its baseline after
imports. mcplane is timed with its default validation (the document against the OpenAPI JSON
Schema), without any (``validate_spec: false``) and with ``openapi-spec-validator``'s full checks
(``validate_spec: full``); FastMCP does not validate.

(b) Calls: ``getItem`` of tests/openapi/rest_app.py (a real uvicorn process), called sequentially:
directly with httpx, through an mcplane plane (in-process SDK client, the whole pipeline and the
gateway's upstream machinery), and through FastMCP's OpenAPI provider (in-process FastMCP client).
Each mode runs in its own process; the modes take turns for ``--repeat`` rounds and each figure is
the median over the rounds, so a noisy moment does not land on one mode only. Ratios are within one
run (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / ".tools" / "openapi" / "node_modules" / "@octokit" / "openapi" / "generated" / "api.github.com.json"
SHOP = ROOT / "tests" / "openapi" / "specs" / "shop.yaml"
REST_APP = ROOT / "tests" / "openapi" / "rest_app.py"
RESULTS = ROOT / "bench" / "RESULTS.md"
SECTION = "## OpenAPI upstreams"

LOAD_CHILD = r"""
import json, resource, sys, time
which, spec = sys.argv[1], sys.argv[2]
def rss_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if which.startswith("mcplane"):
    from mcplane.openapi import load_api
else:
    from fastmcp import FastMCP
    import asyncio
base = rss_kb()
started = time.perf_counter()
if which.startswith("mcplane"):
    api = load_api({"spec": spec, "validate_spec": {"mcplane": True, "mcplane-unchecked": False}.get(which, "full")})
    tools = len(api.operations)
else:
    with open(spec) as f:
        document = json.load(f)
    server = FastMCP.from_openapi(document)
    tools = len(asyncio.run(server.list_tools()))
elapsed = time.perf_counter() - started
print(json.dumps({"seconds": elapsed, "tools": tools, "peak_kb": rss_kb(), "base_kb": base}))
"""

CALL_CHILD = r"""
import asyncio, json, statistics, sys, time
mode, url, shop, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
warm = max(50, n // 10)

async def main():
    lat = []
    if mode == "httpx":
        import httpx
        async with httpx.AsyncClient(headers={"Authorization": "Bearer t0ken"}) as client:
            async def one():
                r = await client.get(url + "/items/1")
                assert r.status_code == 200
                r.json()
            for _ in range(warm): await one()
            for _ in range(n):
                t = time.perf_counter(); await one(); lat.append(time.perf_counter() - t)
    elif mode == "mcplane":
        from mcp import Client
        from mcplane.gateway import Gateway
        plane = Gateway.from_config({"server": {"default_timeout": "10s"}, "upstreams": {"shop": {"openapi": {
            "spec": shop, "base_url": url, "auth": {"bearer": "t0ken"}}}}})
        async with Client(plane.sdk, mode="legacy") as client:
            async def one():
                r = await client.call_tool("shop__getItem", {"item_id": 1})
                assert not r.is_error, r
            for _ in range(warm): await one()
            for _ in range(n):
                t = time.perf_counter(); await one(); lat.append(time.perf_counter() - t)
    else:
        import httpx2, yaml
        from fastmcp import FastMCP, Client
        with open(shop) as f:
            document = yaml.safe_load(f)
        http = httpx2.AsyncClient(base_url=url, headers={"Authorization": "Bearer t0ken"}, timeout=30)
        server = FastMCP.from_openapi(document, client=http)
        async with Client(server) as client:
            async def one():
                r = await client.call_tool("getItem", {"item_id": 1})
                assert not r.is_error, r
            for _ in range(warm): await one()
            for _ in range(n):
                t = time.perf_counter(); await one(); lat.append(time.perf_counter() - t)
    lat.sort()
    print(json.dumps({"p50_ms": lat[len(lat) // 2] * 1000, "p99_ms": lat[int(len(lat) * 0.99)] * 1000,
                      "calls_per_s": n / sum(lat)}))

asyncio.run(main())
"""


def _child(code: str, *args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT, check=False, timeout=600
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            pass
    raise RuntimeError("the REST service did not start")


def measure_load(repeat: int) -> dict[str, dict[str, float]]:
    rows: dict[str, dict[str, float]] = {}
    for which in ("mcplane", "mcplane-unchecked", "mcplane+full", "fastmcp"):
        runs = [_child(LOAD_CHILD, which, str(SPEC)) for _ in range(repeat)]
        rows[which] = {
            "seconds": statistics.median(r["seconds"] for r in runs),
            "peak_mb": statistics.median((r["peak_kb"] - r["base_kb"]) / 1024 for r in runs),
            "tools": runs[0]["tools"],
        }
        print(which, rows[which], flush=True)
    return rows


def measure_calls(calls: int, rounds: int) -> dict[str, dict[str, float]]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, str(REST_APP), str(port)], cwd=ROOT)
    try:
        _wait(port)
        url = f"http://127.0.0.1:{port}"
        runs: dict[str, list[dict[str, float]]] = {"httpx": [], "mcplane": [], "fastmcp": []}
        for _ in range(rounds):
            for mode, results in runs.items():
                results.append(_child(CALL_CHILD, mode, url, str(SHOP), str(calls)))
                print(mode, results[-1], flush=True)
        return {
            mode: {key: statistics.median(r[key] for r in results) for key in results[0]}
            for mode, results in runs.items()
        }
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def render(load: dict[str, dict[str, float]], calls: dict[str, dict[str, float]], args: argparse.Namespace) -> str:
    m, u, v, f = load["mcplane"], load["mcplane-unchecked"], load["mcplane+full"], load["fastmcp"]
    h, mc, fc = calls["httpx"], calls["mcplane"], calls["fastmcp"]
    lines = [
        SECTION,
        "",
        f"`python bench/openapi.py --calls {args.calls} --repeat {args.repeat}` on {time.strftime('%Y-%m-%d')}, "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs "
        "(shared and noisy: compare ratios within this run).",
        "",
        "**(a) GitHub's document into tools** (npm @octokit/openapi 23.0.2, 13 MB, 1,223 operations), "
        f"fresh process each, median of {args.repeat}:",
        "",
        "| | tools | time | peak RSS growth |",
        "|---|---:|---:|---:|",
        f"| mcplane (checked against the OpenAPI JSON Schema) | {m['tools']} | {m['seconds']:.2f} s | "
        f"{m['peak_mb']:.0f} MB |",
        f"| mcplane, `validate_spec: false` | {u['tools']} | {u['seconds']:.2f} s | {u['peak_mb']:.0f} MB |",
        f"| mcplane, `validate_spec: full` | {v['tools']} | {v['seconds']:.2f} s | {v['peak_mb']:.0f} MB |",
        f"| FastMCP 4.1.2 `from_openapi` | {f['tools']} | {f['seconds']:.2f} s | {f['peak_mb']:.0f} MB |",
        "",
        f"mcplane / FastMCP: time x{m['seconds'] / f['seconds']:.2f} (x{v['seconds'] / f['seconds']:.2f} with full "
        "validation), "
        f"memory x{m['peak_mb'] / max(f['peak_mb'], 1):.2f}.",
        "",
        f"**(b) One tool call** (`getItem` of the test REST service under uvicorn, {args.calls} sequential calls "
        f"after a warm-up, one process per mode, modes taking turns, median of {args.repeat} rounds):",
        "",
        "| | calls/s | p50 | p99 | added p50 vs httpx |",
        "|---|---:|---:|---:|---:|",
        f"| httpx directly | {h['calls_per_s']:.0f} | {h['p50_ms']:.2f} ms | {h['p99_ms']:.2f} ms | |",
        f"| mcplane plane (SDK client in-process) | {mc['calls_per_s']:.0f} | {mc['p50_ms']:.2f} ms | "
        f"{mc['p99_ms']:.2f} ms | +{mc['p50_ms'] - h['p50_ms']:.2f} ms |",
        f"| FastMCP 4.1.2 (its client in-process) | {fc['calls_per_s']:.0f} | {fc['p50_ms']:.2f} ms | "
        f"{fc['p99_ms']:.2f} ms | +{fc['p50_ms'] - h['p50_ms']:.2f} ms |",
        "",
        f"mcplane / httpx: calls/s x{mc['calls_per_s'] / h['calls_per_s']:.2f}; "
        f"mcplane / FastMCP: calls/s x{mc['calls_per_s'] / fc['calls_per_s']:.2f}.",
        "",
    ]
    return "\n".join(lines)


def write(section: str) -> None:
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else ""
    pattern = re.compile(rf"{re.escape(SECTION)}\n.*?(?=\n## |\Z)", re.S)
    text = pattern.sub(section.rstrip("\n"), text) if SECTION in text else text.rstrip("\n") + "\n\n" + section
    RESULTS.write_text(text.rstrip("\n") + "\n", encoding="utf-8")


def keep_section(path: Path, text: str) -> str:
    """``text`` (a new bench/run.py report for ``path``) with the OpenAPI section ``path`` already had, if any."""
    if not path.exists() or SECTION in text:
        return text
    old = path.read_text(encoding="utf-8")
    found = re.search(rf"{re.escape(SECTION)}\n.*?(?=\n## |\Z)", old, re.S)
    return text if found is None else text.rstrip("\n") + "\n\n" + found.group(0).rstrip("\n") + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if not SPEC.exists():
        sys.exit(f"{SPEC.relative_to(ROOT)} is missing: bash scripts/install-test-deps.sh installs it")
    load = measure_load(args.repeat)
    calls = measure_calls(args.calls, args.repeat)
    section = render(load, calls, args)
    print(section)
    if not args.no_write:
        write(section)


if __name__ == "__main__":
    main()
