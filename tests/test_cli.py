"""The ``mcplane`` command in real processes: ``--version``, ``run`` failures, ``call`` over every transport."""

from __future__ import annotations

import json
import shlex
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from mcplane import __version__
from mcplane.cli import main
from tests.conftest import E2E_APP, QUICKSTART, REPO_ROOT, ServerProcess, mcplane_command, wire_error_of

TIMEOUT = 30


@dataclass(frozen=True)
class Outcome:
    returncode: int
    stdout: str
    stderr: str


def _run(*args: str) -> Outcome:
    done = subprocess.run(mcplane_command(*args), capture_output=True, text=True, cwd=REPO_ROOT, timeout=TIMEOUT)
    return Outcome(done.returncode, done.stdout, done.stderr)


def _assert_one_line_error(outcome: Outcome, expected: str) -> None:
    assert outcome.returncode != 0
    assert "Traceback" not in outcome.stderr
    lines = outcome.stderr.splitlines()
    assert len(lines) == 1, outcome.stderr
    assert lines[0].startswith("mcplane: error: ")
    assert expected in lines[0]


def test_version() -> None:
    outcome = _run("--version")
    assert (outcome.returncode, outcome.stdout) == (0, f"mcplane {__version__}\n")


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "mcplane"
    if not script.exists():
        pytest.skip("the mcplane script is not installed next to this interpreter")
    done = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=TIMEOUT)
    assert done.stdout == f"mcplane {__version__}\n"


# ------------------------------------------------------------------ mcplane run: bad targets
@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Outcome]:
    """``mcplane ARGS`` in this process: the same ``main`` the script runs, without an interpreter start."""
    monkeypatch.setattr(sys, "path", list(sys.path))  # loading a target puts its folder first

    def run(*args: str) -> Outcome:
        try:
            code = main(list(args))
        except SystemExit as exit_:  # argparse's own exits (usage errors, --version)
            code = exit_.code if isinstance(exit_.code, int) else 1
        captured = capsys.readouterr()
        return Outcome(code, captured.out, captured.err)

    return run


@pytest.fixture
def targets(tmp_path: Path) -> Path:
    (tmp_path / "no_plane.py").write_text("x = 1\n", encoding="utf-8")
    (tmp_path / "two_planes.py").write_text(
        'from mcplane import Plane\na = Plane("a")\nb = Plane("b")\n', encoding="utf-8"
    )
    (tmp_path / "broken.py").write_text("def f(:\n", encoding="utf-8")
    (tmp_path / "raises.py").write_text("raise RuntimeError('line one\\nline two')\n", encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("{tmp}/absent.py", "no such file: "),
        ("{tmp}/no_plane.py", "no_plane.py defines no Plane; name one with"),
        ("{tmp}/two_planes.py", "two_planes.py defines several Planes; name one with"),
        ("{app}:Invoice", "plane_app.py:Invoice is a class, not an mcplane Plane"),
        ("tests.e2e.plane_app:SECRET", "tests.e2e.plane_app:SECRET is a str, not an mcplane Plane"),
        ("no_such_module_zz:plane", "no module named 'no_such_module_zz'"),
        ("{tmp}/broken.py", "broken.py failed: SyntaxError"),
        ("{tmp}/raises.py", "raises.py failed: RuntimeError: line one line two"),
    ],
)
def test_run_with_a_bad_target_is_one_line(
    cli: Callable[..., Outcome], targets: Path, target: str, expected: str
) -> None:
    outcome = cli("run", target.format(tmp=targets, app=E2E_APP))
    _assert_one_line_error(outcome, expected)
    assert outcome.returncode == 1
    assert outcome.stdout == ""


def test_run_on_a_port_out_of_range(cli: Callable[..., Outcome]) -> None:
    outcome = cli("run", str(QUICKSTART), "--transport", "http", "--port", "70000")
    _assert_one_line_error(outcome, "port must be between 0 and 65535, got 70000")


def test_run_on_a_port_in_use_in_a_real_process() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        outcome = _run("run", str(QUICKSTART), "--transport", "http", "--port", port)
    _assert_one_line_error(outcome, f"cannot listen on 127.0.0.1:{port}: Address already in use")
    assert outcome.returncode == 1
    assert outcome.stdout == ""


def test_usage_errors_are_one_line_and_exit_2(cli: Callable[..., Outcome]) -> None:
    missing = cli("run")
    _assert_one_line_error(missing, "the following arguments are required: target (see mcplane run --help)")
    assert missing.returncode == 2
    bad_port = cli("run", str(QUICKSTART), "--port", "eighty")
    _assert_one_line_error(bad_port, "argument --port: invalid int value: 'eighty'")
    assert bad_port.returncode == 2


# ------------------------------------------------------------------ mcplane call
def _call_json(outcome: Outcome) -> dict[str, object]:
    assert "Traceback" not in outcome.stderr
    return json.loads(outcome.stdout)


def test_call_over_http(e2e_server: ServerProcess) -> None:
    outcome = _run("call", e2e_server.url, "add", "--args", '{"a": 2, "b": 3}')
    assert outcome.returncode == 0, outcome.stderr
    result = _call_json(outcome)
    assert result["structuredContent"] == {"result": 5}
    assert result["isError"] is False


def test_call_over_websocket(cli: Callable[..., Outcome], e2e_server: ServerProcess) -> None:
    outcome = cli("call", e2e_server.ws_url, "get_invoice", "--args", '{"invoice_id": "inv-3"}')
    assert outcome.returncode == 0, outcome.stderr
    assert _call_json(outcome)["structuredContent"] == {"id": "inv-3", "amount_cents": 1250, "paid": False}


def test_call_a_stdio_command(cli: Callable[..., Outcome]) -> None:
    command = shlex.join(mcplane_command("run", str(E2E_APP)))
    outcome = cli("call", command, "add", "--args", '{"a": 20, "b": 22}')
    assert outcome.returncode == 0, outcome.stderr
    assert _call_json(outcome)["structuredContent"] == {"result": 42}


def test_call_prints_a_tool_error_and_exits_1(cli: Callable[..., Outcome], e2e_server: ServerProcess) -> None:
    outcome = cli("call", e2e_server.url, "get_invoice")
    assert outcome.returncode == 1
    result = _call_json(outcome)
    assert result["isError"] is True
    assert wire_error_of(result)["code"] == "invalid_arguments"  # type: ignore[index]


def test_call_with_bad_json_arguments(cli: Callable[..., Outcome]) -> None:
    _assert_one_line_error(cli("call", "http://127.0.0.1:9/mcp", "add", "--args", '{"a": '), "--args is not valid JSON")
    _assert_one_line_error(
        cli("call", "http://127.0.0.1:9/mcp", "add", "--args", "[1, 2]"), "--args must be a JSON object"
    )


def test_call_failures_are_one_line(cli: Callable[..., Outcome], e2e_server: ServerProcess) -> None:
    _assert_one_line_error(
        cli("call", e2e_server.url, "no_such_tool"), "call failed: MCPError: Unknown tool: no_such_tool"
    )
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    _assert_one_line_error(cli("call", f"http://127.0.0.1:{port}/mcp", "add"), "call failed:")
    _assert_one_line_error(cli("call", "no-such-command-zz --flag", "add"), "call failed: FileNotFoundError")
    _assert_one_line_error(cli("call", "", "add"), "empty endpoint")


def test_gateway_subcommand_reaches_the_gateway(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "gateway.yaml"
    bad.write_text("upstreams: {a: {endpoints: [{url: 'ftp://nope'}]}}\n")
    code = main(["gateway", "--config", str(bad)])
    err = capsys.readouterr().err
    assert code != 0
    assert err.startswith("mcplane")
    assert len(err.strip().splitlines()) == 1
