"""Start both agents and the gateway, make one compliance check through the gateway, stop everything.

    python examples/multi-agent/run.py

Three processes on free loopback ports: ``mcplane run regulatory_agent.py --transport http``,
``mcplane run compliance_agent.py --transport http`` and ``mcplane gateway --config gateway.yaml``.
Once the gateway is ready (both agents connected), one ``compliance__check_compliance`` call goes
to the gateway; the compliance agent asks ``regulatory__lookup_regulation`` back through the
gateway. The answer is printed as JSON; every process gets SIGTERM and the exit status is 0.
:func:`running` is the same start and stop, for other programs (the tests) to reuse.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Generator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx

from mcplane.client import Client
from mcplane.errors import MCPlaneError

HERE = Path(__file__).resolve().parent
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
CHECK = "compliance__check_compliance"
TRADE: dict[str, Any] = {"jurisdiction": "EU", "instrument": "ACME", "notional": 7_500_000, "short_sale": True}


class StartFailed(RuntimeError):
    """A process exited or did not become ready; the message holds its log."""


@dataclass
class Service:
    """One process serving MCP over HTTP on 127.0.0.1:port, its output in ``log``."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/mcp"

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Send ``sig`` and wait for the exit (SIGKILL after ``STOP_TIMEOUT``); the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT)
        return self.proc.returncode


@dataclass
class Agents:
    regulatory: Service
    compliance: Service
    gateway: Service
    exit_codes: dict[str, int] = field(default_factory=dict[str, int])
    """Each process's exit status, filled in as :func:`running` stops them."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(name: str, args: Sequence[str], port: int, env: dict[str, str], logs: Path) -> Service:
    """``mcplane ARGS --port PORT`` (run with this interpreter), its output into ``logs/NAME.log``."""
    log = logs / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mcplane.cli", *args, "--port", str(port)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Service(name, proc, port, log)


def _wait_ready(service: Service, path: str) -> None:
    """Poll ``path`` until it answers 200; fail if the process exits or the time runs out."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            if httpx.get(service.base + path, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        try:
            service.proc.wait(timeout=0.1)  # the pause between polls; ends at once if it exited
        except subprocess.TimeoutExpired:
            continue
        raise StartFailed(f"{service.name} exited with {service.proc.returncode}:\n{service.log.read_text()}")
    raise StartFailed(f"{service.name} was not ready within {START_TIMEOUT:g} s:\n{service.log.read_text()}")


@contextmanager
def running(logs: Path) -> Generator[Agents]:
    """Both agents and the gateway, started and ready; all stopped (SIGTERM) on the way out."""
    ports = {"regulatory": free_port(), "compliance": free_port(), "gateway": free_port()}
    agent_env = {**os.environ, "GATEWAY_URL": f"http://127.0.0.1:{ports['gateway']}/mcp"}  # their only way out
    gateway_env = {  # gateway.yaml's endpoints, moved to the ports picked here (environment overrides)
        **os.environ,
        "MCPLANE__UPSTREAMS__REGULATORY__ENDPOINTS": f"[{{url: 'http://127.0.0.1:{ports['regulatory']}/mcp'}}]",
        "MCPLANE__UPSTREAMS__COMPLIANCE__ENDPOINTS": f"[{{url: 'http://127.0.0.1:{ports['compliance']}/mcp'}}]",
    }
    with ExitStack() as stack:
        services: dict[str, Service] = {}

        def start(name: str, *args: str) -> Service:
            env = gateway_env if name == "gateway" else agent_env
            service = services[name] = _start(name, args, ports[name], env, logs)
            stack.callback(lambda: codes.setdefault(name, service.stop()))  # in reverse: the gateway first
            return service

        codes: dict[str, int] = {}
        regulatory = start("regulatory", "run", str(HERE / "regulatory_agent.py"), "--transport", "http")
        compliance = start("compliance", "run", str(HERE / "compliance_agent.py"), "--transport", "http")
        _wait_ready(regulatory, "/health")  # both agents start side by side
        _wait_ready(compliance, "/health")
        gateway = start("gateway", "gateway", "--config", str(HERE / "gateway.yaml"))
        _wait_ready(gateway, "/ready")  # 200 once every upstream of gateway.yaml is connected
        agents = Agents(regulatory, compliance, gateway, exit_codes=codes)
        yield agents


async def check(gateway_url: str, trade: dict[str, Any], *, timeout: float = 10.0) -> dict[str, Any]:  # noqa: ASYNC109 - the call's deadline, sent along
    """One ``compliance__check_compliance`` call through the gateway; its structured answer."""
    async with Client(gateway_url, timeout=timeout) as client:
        result = await client.call_tool(CHECK, trade)
    return dict(result.structured_content or {})


def main() -> int:
    with tempfile.TemporaryDirectory() as logs:
        try:
            with running(Path(logs)) as agents:
                print(f"gateway {agents.gateway.url}: {CHECK}({json.dumps(TRADE)})", flush=True)
                answer = anyio.run(check, agents.gateway.url, TRADE)
        except StartFailed as exc:
            print(f"could not start: {exc}", file=sys.stderr)
            return 1
        except MCPlaneError as exc:
            print(f"{CHECK} failed: {exc.code}: {exc.message}", file=sys.stderr)
            return 1
    print(json.dumps(answer, indent=2))
    print("stopped:", ", ".join(f"{name} {code}" for name, code in agents.exit_codes.items()))
    return 0 if not any(agents.exit_codes.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
