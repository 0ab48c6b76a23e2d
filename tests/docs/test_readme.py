"""The README's commands and snippets, run as written (ports swapped for free ones)."""

from __future__ import annotations

import re
import shlex
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
BIN = Path(sys.executable).parent


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(port: int, proc: subprocess.Popen[bytes]) -> None:
    with anyio.from_thread.start_blocking_portal() as portal:
        portal.call(_poll_health, port, proc)


async def _poll_health(port: int, proc: subprocess.Popen[bytes]) -> None:
    with anyio.fail_after(20):
        async with httpx.AsyncClient() as client:
            while True:
                assert proc.poll() is None, "server exited during start-up"
                try:
                    if (await client.get(f"http://127.0.0.1:{port}/health")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await anyio.sleep(0.05)


@pytest.fixture(scope="module")
def quickstart_port() -> Iterator[int]:
    """Start the server exactly as the README's first command's last step does, on a free port."""
    first = _blocks("bash")[0].strip()
    run_step = first.split("&&")[-1].strip()
    assert run_step.startswith(".venv/bin/mcplane run examples/quickstart/server.py")
    port = _free_port()
    argv = shlex.split(run_step.replace("--port 8000", f"--port {port}"))
    argv[0] = str(BIN / "mcplane")
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_healthy(port, proc)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        assert proc.stderr is not None
        proc.stderr.close()


def test_second_command_is_what_ci_runs() -> None:
    second = _blocks("bash")[1].strip()
    assert second == "bash scripts/test.sh"
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text()


def test_server_snippet_runs_over_stdio(tmp_path: Path) -> None:
    server = next(block for block in _blocks("python") if 'Plane("billing")' in block)
    path = tmp_path / "server.py"
    path.write_text(server)
    out = subprocess.run(
        [str(BIN / "mcplane"), "call", f"{sys.executable} {path}", "fetch_user", "--args", '{"user_id": "u1"}'],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert '"name": "Ada"' in out.stdout


def test_run_and_call_commands(quickstart_port: int) -> None:
    lines = [
        line.split("#")[0].strip()
        for line in next(block for block in _blocks("bash") if "mcplane --version" in block).splitlines()
        if line.startswith("mcplane call") or line.startswith("mcplane --version")
    ]
    assert len(lines) == 4
    for line in lines:
        argv = shlex.split(line.replace("8000", str(quickstart_port)))
        argv[0] = str(BIN / "mcplane")
        if len(argv) > 2 and argv[2].startswith("mcplane run"):
            argv[2] = f"{BIN / 'mcplane'} run {ROOT / 'examples/quickstart/server.py'}"
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert out.returncode == 0, (line, out.stderr)
        if "call" in argv:
            assert '"structuredContent"' in out.stdout
            assert '"result": 3' in out.stdout


@pytest.mark.parametrize("marker", ["websocket_client(", 'Client("http://127.0.0.1:8000/mcp")'])
async def test_client_snippets(quickstart_port: int, marker: str) -> None:
    snippet = next(block for block in _blocks("python") if marker in block)
    snippet = snippet.replace("8000", str(quickstart_port))
    snippet = snippet.replace('"fetch_user", {"user_id": "u1"}', '"add", {"a": 1, "b": 2}')
    printed: list[str] = []
    namespace: dict[str, object] = {"print": lambda *a: printed.append(" ".join(map(str, a)))}
    body = textwrap.indent(snippet, "    ")
    exec(compile(f"async def _snippet():\n{body}\n    return locals()\n", "README", "exec"), namespace)
    with anyio.fail_after(30):
        local_vars = await namespace["_snippet"]()  # type: ignore[operator]
    if "websocket_client" in marker:
        assert local_vars["result"].structured_content == {"result": 3}
    else:
        assert any("result" in line or "structured" in line for line in printed)
        assert any("tools=" in line for line in printed)


def test_production_layers_snippets(tmp_path: Path) -> None:
    from mcplane import Plane

    decorated = next(block for block in _blocks("python") if "@plane.tool(timeout=" in block)
    plane = Plane("readme")
    exec(compile(decorated, "README", "exec"), {"plane": plane})
    policy = plane.policy_for("invoice_total")
    assert policy["timeout"] == 2.0
    assert policy["rate_limit"] == "100/minute"
    assert policy["roles"] == ["billing"]

    config = tmp_path / "mcplane.yaml"
    config.write_text(_blocks("yaml")[0])
    out = subprocess.run([str(BIN / "mcplane"), "config", "check", str(config)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "authorization" in out.stdout
    assert "audit" in out.stdout

    from mcplane import load_config

    loaded = load_config(config)
    plane.configure(loaded)
    assert plane.policy_for("billing_charge")["timeout"] == 1.0, "the file's glob applies"
    assert plane.policy_for("invoice_total")["timeout"] == 2.0, "no glob matches: the decorator's value"
