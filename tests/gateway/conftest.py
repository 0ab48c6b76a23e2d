"""Real upstreams for the gateway tests: server-everything (stdio, Streamable HTTP) and mcplane planes."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mcp_types import CallToolResult

from tests.conftest import REPO_ROOT, STOP_TIMEOUT, free_port, mcplane_command

EVERYTHING = REPO_ROOT / ".tools" / "alpha" / "node_modules" / ".bin" / "mcp-server-everything"
UPSTREAM_APP = Path(__file__).with_name("upstream_app.py")
START_TIMEOUT = 30.0

_LOOPBACK_PRELOAD = """
const net = require('net');
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === 'object' && args[0] !== null) {
    args[0] = Object.assign({}, args[0], { host: '127.0.0.1' });
  } else if (typeof args[0] === 'number' || typeof args[0] === 'string') {
    const rest = args.slice(1).filter((a) => typeof a !== 'string');
    if (typeof rest[0] === 'number') rest.shift();  // drop a backlog given without a host
    args = [args[0], '127.0.0.1', ...rest];
  }
  return listen.apply(this, args);
};
"""


def everything_command() -> list[str]:
    if not EVERYTHING.exists() or shutil.which("node") is None:
        pytest.skip("server-everything (npm) or node is not installed")
    return [str(EVERYTHING)]


def error_code(result: CallToolResult) -> str | None:
    if not result.is_error:
        return None
    body: Any = (result.meta or {}).get("mcplane/error")
    if not isinstance(body, dict):
        return None
    assert result.structured_content is None, "an error result never carries structuredContent"
    return body.get("code")


def text_of(result: CallToolResult) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = START_TIMEOUT) -> None:
    """Return once something listens on ``port``; else kill ``proc`` (so it outlives no test) and fail."""
    try:
        _wait_for_port(port, proc, timeout)
    except BaseException:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT)
        raise


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            try:
                proc.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                pass
    pytest.fail(f"nothing listened on port {port} within {timeout:g} s")


@dataclass
class NodeServer:
    """server-everything over Streamable HTTP on 127.0.0.1:port (restartable on the same port)."""

    port: int
    preload: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def start(self) -> None:
        script = os.path.realpath(EVERYTHING)
        self.proc = subprocess.Popen(
            ["node", "--require", str(self.preload), script, "streamableHttp"],
            env={**os.environ, "PORT": str(self.port)},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, self.proc)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def everything_http(tmp_path: Path) -> Iterator[NodeServer]:
    everything_command()
    preload = tmp_path / "loopback.js"
    preload.write_text(_LOOPBACK_PRELOAD)
    server = NodeServer(free_port(), preload)
    server.start()
    yield server
    server.kill()


def python_command(*args: str) -> list[str]:
    return [sys.executable, *args]


@dataclass
class PlaneServer:
    """``mcplane run TARGET --transport http`` on 127.0.0.1:port (HTTP and WebSocket), restartable
    on the same port; its output in ``log``."""

    target: Path
    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/mcp"

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                mcplane_command("run", str(self.target), "--transport", "http", "--port", str(self.port)),
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )
        wait_for_port(self.port, self.proc)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT)


@pytest.fixture
def plane_http(tmp_path: Path) -> Iterator[PlaneServer]:
    """tests/gateway/upstream_app.py served over HTTP and WebSocket on a free port (restartable there)."""
    server = PlaneServer(UPSTREAM_APP, free_port(), tmp_path / "upstream.log")
    server.start()
    yield server
    server.stop()


def start_gateway(config: Path, stderr: Path) -> tuple[subprocess.Popen[bytes], int]:
    """A real ``mcplane gateway`` process on ``config``, its stderr in ``stderr``; waits for its port."""
    port = free_port()
    with stderr.open("wb") as errlog:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mcplane.cli", "gateway", "--config", str(config), "--port", str(port)],
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=errlog,
        )
    wait_for_port(port, proc)
    return proc, port


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 20 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
