"""The README's commands and snippets, run as written (ports swapped for free ones)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
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
VENV_BIN = ".venv/bin/"
"""Where the README's set-up puts ``mcplane``; the tests run this interpreter's instead."""


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def _block_with(marker: str) -> str:
    return next(block for block in _blocks("bash") if marker in block)


def _command_lines(block: str) -> list[str]:
    """The block's command lines (comments dropped, continued lines joined), in order."""
    joined = block.replace("\\\n", " ")
    return [line.split("  #")[0].strip() for line in joined.splitlines() if line.strip()]


def _here(line: str, port: int | None = None) -> list[str]:
    """A README command line as argv for this environment (and a free port for 8000)."""
    if port is not None:
        line = line.replace("8000", str(port))
    return shlex.split(line.replace(VENV_BIN, f"{BIN}/"))


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


def test_the_readme_names_the_lock_and_the_newest_run() -> None:
    assert "requirements/test-py311-linux.txt" in README
    assert "requirements/test-py311-linux.txt" in (ROOT / "scripts" / "test.sh").read_text()
    assert "`bash scripts/test-newest.sh`" in README
    assert "`bash scripts/lock.sh`" in README
    assert "`bash scripts/lock.sh --upgrade`" in README
    assert '"${1:-}" = "--upgrade"' in (ROOT / "scripts" / "lock.sh").read_text()


def test_every_mcplane_command_works_in_a_new_shell() -> None:
    """No bare ``mcplane``: the set-up does not activate the virtual environment."""
    from mcplane.cli import _parser

    checked = 0
    for block in _blocks("bash"):
        for line in _command_lines(block):
            first = line.split()[0]
            assert first != "mcplane", f"a bare mcplane is not on PATH in a new shell: {line}"
            if first == f"{VENV_BIN}mcplane":
                if line.endswith(" --version"):
                    continue  # argparse prints it and exits; run by test_run_and_call_commands
                _parser().parse_args(shlex.split(line)[1:])  # a usage mistake exits 2 here
                checked += 1
    assert checked >= 20
    config = json.loads(next(block for block in _blocks("json") if "mcpServers" in block))
    entry = config["mcpServers"]["billing"]
    assert entry["command"].startswith("/")
    assert entry["command"].endswith("/.venv/bin/mcplane")
    assert entry["args"][0] == "run"
    assert entry["args"][1].startswith("/")


def test_first_calls(quickstart_port: int) -> None:
    list_, call, read, prompt = (_here(line, quickstart_port) for line in _command_lines(_block_with(" list ")))
    listed = subprocess.run(list_, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert listed.returncode == 0, listed.stderr
    assert "summarize(topic)" in listed.stdout.splitlines()[-1]
    called = subprocess.run(call, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert json.loads(called.stdout)["structuredContent"] == {"result": 3}
    got = subprocess.run(read, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert json.loads(got.stdout)["contents"][0]["text"] == "profile of u1"
    asked = subprocess.run(prompt, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert "invoices" in json.loads(asked.stdout)["messages"][0]["content"]["text"]


def test_dev_command() -> None:
    [line] = _command_lines(_block_with(" dev "))
    port = _free_port()
    argv = _here(line.replace("--port 8001", f"--port {port}"))
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        _wait_healthy(port, proc)  # type: ignore[arg-type]
        called = subprocess.run(
            [str(BIN / "mcplane"), "call", f"http://127.0.0.1:{port}/mcp", "add", "--args", '{"a": 2, "b": 2}'],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert json.loads(called.stdout)["structuredContent"] == {"result": 4}
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0
    assert proc.stdout is not None
    printed = proc.stdout.read()
    proc.stdout.close()
    assert f"npx @modelcontextprotocol/inspector --cli http://127.0.0.1:{port}/mcp --transport http" in printed


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
@pytest.mark.parametrize(("marker", "answer_id"), [("2026-07-28", 1), ("SESSION=", 2)])
def test_curl_examples(quickstart_port: int, marker: str, answer_id: int) -> None:
    block = next(block for block in _blocks("bash") if "curl" in block and marker in block)
    done = subprocess.run(
        ["bash", "-c", block.replace("8000", str(quickstart_port))], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    lines = [line.removeprefix("data: ") for line in done.stdout.splitlines() if line.strip()]
    answer = json.loads(lines[-1])
    assert answer["id"] == answer_id
    assert answer["result"]["structuredContent"] == {"result": 3}
    if marker == "SESSION=":
        assert "Mcp-Session-Id: $SESSION" in block
        assert "MCP-Protocol-Version: 2025-11-25" in block
        assert "notifications/initialized" in block
    else:
        assert '"io.modelcontextprotocol/clientCapabilities": {}' in block
        assert "Mcp-Method: tools/call" in block
        assert "Mcp-Name: add" in block


def test_run_and_call_commands(quickstart_port: int) -> None:
    lines = [
        line
        for line in _command_lines(_block_with("--version"))
        if shlex.split(line)[1] in ("call", "list", "--version") or "config check examples/" in line
    ]
    assert len(lines) == 7
    for line in lines:
        out = subprocess.run(_here(line, quickstart_port), capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert out.returncode == 0, (line, out.stderr)
        if " call " in line:
            assert json.loads(out.stdout)["structuredContent"] == {"result": 3}
        if " list " in line:
            assert out.stdout.split()[:3] == ["tools:", "fetch_user", "Fetch"]


def test_install_commands(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "XDG_CONFIG_HOME"}
    env["HOME"] = str(tmp_path)
    vscode = tmp_path / "workspace" / ".vscode" / "mcp.json"
    written: list[Path] = []
    for line in _command_lines(_block_with("mcplane install")):
        argv = _here(line)
        if argv[2] == "vscode":  # it writes .vscode/mcp.json here: not into the repository
            argv += ["--config-path", str(vscode)]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)
        assert out.returncode == 0, (line, out.stderr)
        written.append(Path(out.stdout.split(" in ", 1)[1].split(";")[0]))
    assert written[1] == tmp_path / ".cursor" / "mcp.json"
    assert written[2] == vscode
    assert written[0].is_relative_to(tmp_path)
    assert written[0].name == "claude_desktop_config.json"
    for path in written:
        config = json.loads(path.read_text())
        [entry] = (config.get("mcpServers") or config["servers"]).values()
        assert entry["command"] == str(BIN / "mcplane")
        assert entry["args"] == ["run", str(ROOT / "examples" / "quickstart" / "server.py")]


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
    assert policy.timeout == 2.0
    assert policy.rate_limit == "100/minute"
    assert policy.roles == ("billing",)

    config = tmp_path / "mcplane.yaml"
    config.write_text(_blocks("yaml")[0])
    out = subprocess.run([str(BIN / "mcplane"), "config", "check", str(config)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "authorization" in out.stdout
    assert "audit" in out.stdout

    from mcplane import load_config

    loaded = load_config(config)
    plane.configure(loaded)
    assert plane.policy_for("billing_charge").timeout == 1.0, "the file's glob applies"
    assert plane.policy_for("invoice_total").timeout == 2.0, "no glob matches: the decorator's value"


def test_the_layout_names_every_module_and_package() -> None:
    layout = README.split("## Layout", 1)[1].split("```", 2)[1]
    source = ROOT / "src" / "mcplane"
    names = [p.name for p in source.iterdir() if p.suffix == ".py" and not p.name.startswith("_")]
    names += [f"{p.name}/" for p in source.iterdir() if p.is_dir() and (p / "__init__.py").exists()]
    missing = [name for name in sorted(names) if name not in layout]
    assert not missing, f"README's layout does not name {missing}"
