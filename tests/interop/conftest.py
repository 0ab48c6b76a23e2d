"""Servers and targets for the interop matrix: the typed plane and the gateway, as real processes.

Each test module starts its own pair once (``servers``): the typed plane over Streamable HTTP and
``mcplane gateway`` over Streamable HTTP fronting it. Stdio targets are commands the client itself
spawns, one server per connection, with the same files.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import (
    REPO_ROOT,
    START_TIMEOUT,
    STOP_TIMEOUT,
    free_port,
    mcplane_command,
)
from tests.interop.matrix import Target

HERE = Path(__file__).resolve().parent
TYPED_APP = HERE / "typed_app.py"
PLANE_CONFIG = HERE / "mcplane.yaml"
GATEWAY_CONFIG = HERE / "gateway.yaml"
TOOLS = REPO_ROOT / ".tools"
NODE22 = TOOLS / "alpha" / "node_modules" / "node" / "bin" / "node"
"""Node 22 (scripts/install-test-deps.sh); the Inspector 2.x needs >= 22.19."""
INTEROP = TOOLS / "interop"
"""Where scripts/install-test-deps.sh installs the pinned outside clients, one prefix each."""


def require(path: Path, what: str) -> Path:
    """``path``, or a skip that says how to get it (a failure under CI, which must run the matrix)."""
    if not path.exists():
        message = f"{what} not found at {path.relative_to(REPO_ROOT)} (bash scripts/install-test-deps.sh installs it)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must run the interop matrix")
        pytest.skip(message)
    return path


def node_env() -> dict[str, str]:
    """The environment for a node client: Node 22 first on PATH, and a HOME of no consequence."""
    return {**os.environ, "PATH": f"{NODE22.parent}{os.pathsep}{os.environ.get('PATH', '')}", "NO_COLOR": "1"}


@dataclass(frozen=True)
class StdioCommand:
    command: str
    args: list[str]
    env: dict[str, str]
    """What the server needs on top of the client's environment."""


@dataclass(frozen=True)
class Servers:
    plane_url: str
    gateway_url: str

    def url(self, target: Target) -> str:
        return self.gateway_url if target.gateway else self.plane_url

    def stdio(self, target: Target) -> StdioCommand:
        """The command a client spawns to reach ``target`` over stdio (from the repository root)."""
        if target.gateway:
            args = mcplane_command("gateway", "--transport", "stdio")
            env = {"MCPLANE_GATEWAY_CONFIG": str(GATEWAY_CONFIG), "MCPLANE_INTEROP_PLANE_URL": self.plane_url}
        else:
            args = mcplane_command("run", str(TYPED_APP))
            env = {"MCPLANE_CONFIG": str(PLANE_CONFIG)}
        return StdioCommand(args[0], args[1:], env)


def _spawn(args: list[str], env: dict[str, str], stderr: Path) -> subprocess.Popen[bytes]:
    with stderr.open("wb") as errlog:
        return subprocess.Popen(
            args, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errlog
        )


def _wait_ready(port: int, proc: subprocess.Popen[bytes], stderr: Path, deadline: float) -> None:
    """Wait until ``/ready`` answers 200 (for the gateway: its upstream is connected)."""
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        try:
            proc.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            continue
        pytest.fail(f"{proc.args!r} exited with {proc.returncode}:\n{stderr.read_text(errors='replace')[-3000:]}")
    pytest.fail(
        f"{proc.args!r} was not ready within {2 * START_TIMEOUT:g} s:\n{stderr.read_text(errors='replace')[-3000:]}"
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    """The typed plane and the gateway over Streamable HTTP, started side by side (the gateway
    connects to the plane as soon as it answers)."""
    tmp_path = tmp_path_factory.mktemp("interop")
    plane_port, gateway_port = free_port(), free_port()
    plane_url = f"http://127.0.0.1:{plane_port}/mcp"
    plane_stderr, gateway_stderr = tmp_path / "plane.stderr", tmp_path / "gateway.stderr"
    plane = _spawn(
        mcplane_command("run", str(TYPED_APP), "--transport", "http", "--port", str(plane_port)),
        {**os.environ, "MCPLANE_CONFIG": str(PLANE_CONFIG)},
        plane_stderr,
    )
    gateway = _spawn(
        mcplane_command("gateway", "--config", str(GATEWAY_CONFIG), "--port", str(gateway_port)),
        {**os.environ, "MCPLANE_INTEROP_PLANE_URL": plane_url},
        gateway_stderr,
    )
    try:
        deadline = time.monotonic() + 2 * START_TIMEOUT
        _wait_ready(plane_port, plane, plane_stderr, deadline)
        _wait_ready(gateway_port, gateway, gateway_stderr, deadline)
        yield Servers(plane_url, f"http://127.0.0.1:{gateway_port}/mcp")
    finally:
        _stop(gateway)
        _stop(plane)


# ----------------------------------------------------------------------------------- the matrix report
_results: dict[str, dict[str, int]] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Count each matrix case's outcome under its cell (``test_case[<cell>-<case>]``)."""
    if "tests/interop/" not in report.nodeid or "[" not in report.nodeid:
        return
    if report.when != "call" and not (report.when == "setup" and report.outcome != "passed"):
        return
    cell = report.nodeid.split("[", 1)[1].rsplit("-", 1)[0]
    if hasattr(report, "wasxfail"):
        outcome = "xfailed" if report.outcome == "skipped" else "xpassed"
    elif report.when == "setup":
        outcome = "error" if report.outcome == "failed" else report.outcome
    else:
        outcome = report.outcome
    counts = _results.setdefault(cell, {})
    counts[outcome] = counts.get(outcome, 0) + 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _results:
        return
    terminalreporter.section("interop matrix (client-transport-era-target: outcomes)")
    for cell, counts in sorted(_results.items()):
        terminalreporter.write_line(f"{cell:<42} " + "  ".join(f"{n} {what}" for what, n in sorted(counts.items())))
