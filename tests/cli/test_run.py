"""``mcplane run`` and ``mcplane gateway``: the start-up log names the full endpoint URL; failures
raised while serving are still one line."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from tests.cli.conftest import AUTH_APP
from tests.conftest import QUICKSTART, REPO_ROOT, free_port, mcplane_command
from tests.test_tls import CA

WAIT = 30.0


def _start_event(args: Sequence[str], stderr: Path) -> dict[str, Any]:
    """Start ``mcplane ARGS``, return its ``start`` lifecycle event, stop it."""
    with stderr.open("wb") as err:
        proc = subprocess.Popen(mcplane_command(*args), cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + WAIT
    try:
        while time.monotonic() < deadline:
            for line in stderr.read_text().splitlines():
                if line.startswith("{") and (event := orjson.loads(line)).get("event") == "start":
                    return event
            try:
                proc.wait(timeout=0.05)  # a pause that ends early if the process exits
            except subprocess.TimeoutExpired:
                continue
            pytest.fail(f"exited with {proc.returncode} before logging its start:\n{stderr.read_text()}")
        pytest.fail(f"no start event within {WAIT:g} s")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=WAIT)


def test_run_logs_its_urls(tmp_path: Path) -> None:
    port = free_port()
    event = _start_event(
        ["run", str(QUICKSTART), "--transport", "ws", "--port", str(port), "--path", "/tools"], tmp_path / "err"
    )
    assert event["url"] == f"http://127.0.0.1:{port}/tools"
    assert event["websocket_url"] == f"ws://127.0.0.1:{port}/tools"


def test_run_with_tls_logs_https_and_wss(tmp_path: Path) -> None:
    cert, key = CA("start-up log CA").server("localhost").write(tmp_path, "server")
    port = free_port()
    args = ["run", str(QUICKSTART), "--transport", "http", "--port", str(port), "--tls-cert", str(cert)]
    event = _start_event([*args, "--tls-key", str(key)], tmp_path / "err")
    assert event["url"] == f"https://127.0.0.1:{port}/mcp"
    assert event["websocket_url"] == f"wss://127.0.0.1:{port}/mcp"


def test_gateway_logs_its_urls(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    upstream = {"endpoints": [{"url": f"http://127.0.0.1:{free_port()}/mcp"}], "required": False}
    config.write_text(yaml.safe_dump({"upstreams": {"away": upstream}}))
    port = free_port()
    event = _start_event(["gateway", "--config", str(config), "--port", str(port)], tmp_path / "err")
    assert event["url"] == f"http://127.0.0.1:{port}/mcp"
    assert event["websocket_url"] == f"ws://127.0.0.1:{port}/mcp"


def test_a_refused_stdio_start_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "mcplane.yaml"
    config.write_text(yaml.safe_dump({"auth": {"api_keys": [{"hash": "sha256:" + "0" * 64, "subject": "x"}]}}))
    env = {key: value for key, value in os.environ.items() if key != "MCPLANE_TOKEN"}
    done = subprocess.run(
        mcplane_command("run", str(AUTH_APP), "--config", str(config)),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=WAIT,
        env=env,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    plain = [line for line in done.stderr.splitlines() if not line.startswith("{")]
    assert plain == ["mcplane: error: stdio authentication failed: authentication required"]
