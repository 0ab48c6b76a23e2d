"""``mcplane gateway`` as a process: real upstreams over stdio, Streamable HTTP and WebSocket;
the official SDK client of both protocol eras calls through it; nothing outlives it."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import yaml
from mcp import Client

from mcplane.gateway.cli import main
from tests.conftest import REPO_ROOT, ServerProcess, free_port, start_server
from tests.gateway.conftest import UPSTREAM_APP, everything_command, text_of, wait_for_port


@pytest.fixture
def mcplane_upstream(tmp_path: Path) -> Iterator[ServerProcess]:
    server = start_server(UPSTREAM_APP, tmp_path=tmp_path)
    yield server
    server.stop()


def _start_gateway(config: Path, port: int, stderr: Path) -> subprocess.Popen[bytes]:
    with stderr.open("wb") as errlog:
        return subprocess.Popen(
            [sys.executable, "-m", "mcplane.gateway.cli", "--config", str(config), "--port", str(port)],
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=errlog,
        )


def test_config_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "gateway.yaml"
    bad.write_text("upstreams: {a: {endpoints: []}}\n")
    assert main(["--config", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("mcplane: error: ")
    assert "upstreams.a.endpoints" in err
    assert err.count("\n") == 1


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_gateway_process_serves_both_eras(mode: str, tmp_path: Path, mcplane_upstream: ServerProcess) -> None:
    config = {
        "server": {"name": "gw"},
        "upstreams": {
            "everything": {"endpoints": [{"command": everything_command()[0]}]},
            "plane": {"endpoints": [{"url": mcplane_upstream.url}]},
            "planews": {"endpoints": [{"url": mcplane_upstream.ws_url}], "namespace": "ws"},
        },
    }
    file = tmp_path / "gateway.yaml"
    file.write_text(yaml.safe_dump(config))
    port = free_port()
    proc = _start_gateway(file, port, tmp_path / "gateway.stderr")
    try:
        wait_for_port(port, proc)
        async with Client(f"http://127.0.0.1:{port}/mcp", mode=mode) as client:  # pyright: ignore[reportArgumentType]
            names = {tool.name for tool in (await client.list_tools()).tools}
            assert {"everything__echo", "everything__get-sum", "plane__add", "ws__add"} <= names
            assert text_of(await client.call_tool("everything__echo", {"message": mode})) == f"Echo: {mode}"
            assert "7" in text_of(await client.call_tool("everything__get-sum", {"a": 3, "b": 4}))
            assert text_of(await client.call_tool("plane__add", {"a": 1, "b": 2})) == "3"
            assert text_of(await client.call_tool("ws__add", {"a": 2, "b": 2})) == "4"
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children  # the stdio upstream
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail("the gateway did not stop on SIGTERM")
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, f"upstream processes outlived the gateway: {alive}"
