"""Shared helpers: free ports, ``mcplane`` subprocesses and waiting for them without fixed sleeps."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from mcplane.errors import ERROR_META_KEY

REPO_ROOT = Path(__file__).resolve().parents[1]
TESTS_DIR = REPO_ROOT / "tests"
E2E_APP = TESTS_DIR / "e2e" / "plane_app.py"
QUICKSTART = REPO_ROOT / "examples" / "quickstart" / "server.py"

START_TIMEOUT = 60.0
"""How long a server subprocess may take to answer /health: generous, since test files run in
parallel and a loaded machine imports slowly (only a server that never comes up waits this long)."""
STOP_TIMEOUT = 15.0


def mcplane_command(*args: str) -> list[str]:
    """The ``mcplane`` command line, run with this interpreter (no reliance on PATH)."""
    return [sys.executable, "-m", "mcplane.cli", *args]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ServerProcess:
    """An ``mcplane run`` subprocess serving HTTP (and WebSocket) on ``port``."""

    proc: subprocess.Popen[bytes]
    port: int
    stderr_path: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/mcp"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/mcp"

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Ask the server to stop (SIGTERM by default) and wait for it; kill it if it hangs."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT)
                pytest.fail(f"server did not stop within {STOP_TIMEOUT:g} s of signal {sig}")
        return self.proc.returncode


def _healthy(base: str) -> bool:
    try:
        return httpx.get(f"{base}/health", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def start_server(
    target: Path | str,
    *,
    tmp_path: Path,
    env: dict[str, str] | None = None,
    extra_args: Sequence[str] = (),
    transport: str = "http",
) -> ServerProcess:
    """Start ``mcplane run TARGET --transport http`` on a free port and wait until /health answers."""
    for _attempt in range(3):
        port = free_port()
        stderr_path = tmp_path / f"server-{port}.stderr"
        full_env = {**os.environ, **(env or {})}
        with stderr_path.open("wb") as errlog:
            proc = subprocess.Popen(
                mcplane_command("run", str(target), "--transport", transport, "--port", str(port), *extra_args),
                cwd=REPO_ROOT,
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=errlog,
            )
        server = ServerProcess(proc, port, stderr_path, env or {})
        deadline = time.monotonic() + START_TIMEOUT
        while not _healthy(server.base):
            if time.monotonic() > deadline:
                server.stop(signal.SIGKILL)
                pytest.fail(f"server on port {port} did not answer /health within {START_TIMEOUT:g} s")
            try:
                proc.wait(timeout=0.05)  # poll: returns early if the server exits
            except subprocess.TimeoutExpired:
                continue
            break
        if proc.poll() is None:
            return server
        if "Address already in use" not in server.stderr():  # lost a race for the port: try another
            pytest.fail(f"server exited with {proc.returncode} before answering /health:\n{server.stderr()}")
    pytest.fail("could not start a server on a free port in three attempts")


@pytest.fixture(scope="session")
def e2e_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One HTTP + WebSocket server for the e2e plane, shared by the whole session."""
    tmp_path = tmp_path_factory.mktemp("e2e-server")
    server = start_server(E2E_APP, tmp_path=tmp_path, env={"MCPLANE_TEST_LIFESPAN_LOG": str(tmp_path / "lifespan.log")})
    yield server
    server.stop()


def error_of(result: Any) -> dict[str, Any]:
    """The mcplane error object of an ``isError`` tool result (an SDK ``CallToolResult``)."""
    assert result.is_error is True
    assert result.structured_content is None, "an error result never carries structuredContent"
    body = (result.meta or {}).get(ERROR_META_KEY)
    assert isinstance(body, dict), f"no error object in _meta: {result!r}"
    return body


def wire_error_of(result: dict[str, Any]) -> dict[str, Any]:
    """The mcplane error object of an ``isError`` tool result as JSON from the wire."""
    assert result.get("isError") is True
    assert "structuredContent" not in result, "an error result never carries structuredContent"
    return result["_meta"][ERROR_META_KEY]
