"""``mcplane run --workers N``: workers share the port, metrics are summed over them, SIGTERM stops all with 0."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import orjson

from tests.conftest import REPO_ROOT, ServerProcess, free_port, mcplane_command, start_server
from tests.observability.support import OPS_APP, lifecycle, modern_call, modern_headers

MAX_TRIES = 400


def _spread_calls(server: ServerProcess) -> tuple[int, set[int]]:
    """Call ``pid`` on fresh connections until both workers have answered; (calls made, pids seen)."""
    pids: set[int] = set()
    made = 0
    no_keepalive = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(base_url=server.base, timeout=10.0, limits=no_keepalive) as http:
        while len(pids) < 2 and made < MAX_TRIES:
            response = http.post("/mcp", json=modern_call("pid", {}), headers=modern_headers("pid"))
            made += 1
            pids.add(response.json()["result"]["structuredContent"]["result"])
    return made, pids


def _sample(text: str, series: str) -> float:
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, flags=re.M)
    assert match is not None, f"{series} not in the scrape:\n{text}"
    return float(match.group(1))


CALLS_OK = 'mcplane_calls_total{code="",kind="tool",name="pid",status="ok"}'


def test_two_workers_answer_and_one_scrape_sums_both(tmp_path: Path) -> None:
    server = start_server(OPS_APP, tmp_path=tmp_path, extra_args=["--workers", "2"])
    try:
        made, pids = _spread_calls(server)
        assert len(pids) == 2, f"one worker answered all {made} calls"
        for _ in range(3):  # whichever worker answers the scrape, it reports both
            scrape = httpx.get(f"{server.base}/metrics", timeout=10.0)
            assert scrape.status_code == 200
            assert _sample(scrape.text, CALLS_OK) == made
            assert _sample(scrape.text, "mcplane_fast_path_calls_total") == made
            assert _sample(scrape.text, 'mcplane_calls_in_flight{kind="tool"}') == 0
    finally:
        code = server.stop()
    assert code == 0, server.stderr()
    steps = lifecycle(server.stderr())
    assert steps.count("ready") == 2
    assert steps.count("stopped") == 3, "each worker, then the supervisor"


def test_the_supervisor_serves_the_metrics_port_for_all_workers(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "mcplane.yaml"
    config.write_text(f"observability:\n  metrics:\n    port: {port}\n    host: 127.0.0.1\n", encoding="utf-8")
    server = start_server(OPS_APP, tmp_path=tmp_path, extra_args=["--workers", "2", "--config", str(config)])
    try:
        made, pids = _spread_calls(server)
        assert len(pids) == 2
        assert httpx.get(f"{server.base}/metrics", timeout=10.0).status_code == 404, "not on the MCP port"
        scrape = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10.0)
        assert _sample(scrape.text, CALLS_OK) == made
    finally:
        assert server.stop() == 0, server.stderr()


def test_workers_are_for_http_not_stdio() -> None:
    done = subprocess.run(
        mcplane_command("run", str(OPS_APP), "--workers", "2"),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 1
    assert done.stderr == "mcplane: error: --workers applies to the http and ws transports, not stdio\n"


LEGACY = "2025-11-25"


def _legacy_result(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    text = response.text
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        text = next(line[5:] for line in text.splitlines() if line.startswith("data:") and line[5:].strip())
    return orjson.loads(text)["result"]


def test_a_session_opened_on_one_worker_continues_on_the_others(tmp_path: Path) -> None:
    """No ``sessions.keys`` configured: the supervisor gives every worker the same random key."""
    server = start_server(OPS_APP, tmp_path=tmp_path, extra_args=["--workers", "2"])
    try:
        base = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
        init = {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
        }
        no_keepalive = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(base_url=server.base, timeout=10.0, limits=no_keepalive) as http:
            opened = http.post("/mcp", json=init, headers=base)
            headers = base | {"mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": LEGACY}
            note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
            assert http.post("/mcp", json=note, headers=headers).status_code == 202
            pids: set[int] = set()
            made = 0
            while len(pids) < 2 and made < MAX_TRIES:  # fresh connections land on either worker
                call = {"jsonrpc": "2.0", "id": made + 1, "method": "tools/call", "params": {"name": "pid"}}
                result = _legacy_result(http.post("/mcp", json=call, headers=headers))
                pids.add(result["structuredContent"]["result"])
                made += 1
        assert len(pids) == 2, f"one worker answered all {made} calls"
    finally:
        assert server.stop() == 0, server.stderr()
