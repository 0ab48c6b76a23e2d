"""docs/cli.md, checked: every command line on it parses, every option of every command is named
on it, and its examples run against a real server."""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import QUICKSTART, REPO_ROOT, ServerProcess, start_server

from mcplane.cli.dev import inspector_hint
from mcplane.cli.parser import build_parser

DOC = (REPO_ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
BIN = Path(sys.executable).parent
VENV_MCPLANE = ".venv/bin/mcplane"


def _commands_in(lang: str = "bash") -> list[str]:
    lines: list[str] = []
    for block in re.findall(rf"```{lang}\n(.*?)```", DOC, flags=re.S):
        lines += [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]
    return lines


def _section(title: str) -> str:
    return DOC.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def _argv(line: str, port: int | None = None) -> list[str]:
    if port is not None:
        line = line.replace("8000", str(port))
    words = shlex.split(line)
    if "=" in words[0]:  # an environment assignment first: MCPLANE_TOKEN=... mcplane ...
        words = words[1:]
    assert words[0] == VENV_MCPLANE, line
    return [str(BIN / "mcplane"), *words[1:]]


def _subcommands(parser: argparse.ArgumentParser, path: str = "") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():  # pyright: ignore[reportUnknownVariableType]
                yield f"{path} {name}".strip(), sub  # pyright: ignore[reportUnknownArgumentType]
                yield from _subcommands(sub, f"{path} {name}")  # pyright: ignore[reportUnknownArgumentType]


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server(QUICKSTART, tmp_path=tmp_path_factory.mktemp("cli-docs"))
    yield server
    server.stop()


def test_every_command_line_parses() -> None:
    lines = _commands_in()
    assert len(lines) > 20
    for line in lines:
        build_parser().parse_args(_argv(line)[1:])  # a usage mistake exits 2 here


def test_every_command_and_option_is_documented() -> None:
    for path, parser in _subcommands(build_parser()):
        if parser._subparsers is None or path == "gateway":  # "config" and "audit" are named by their actions
            assert f"{path}`" in DOC or f"## {path}" in DOC, f"mcplane {path} is not on docs/cli.md"
        for action in parser._actions:
            if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
                continue
            for option in action.option_strings:
                assert f"{option}" in DOC, f"mcplane {path} {option} is not on docs/cli.md"


def test_talking_to_a_server(quickstart: ServerProcess) -> None:
    block = re.findall(r"```bash\n(.*?)```", _section("Talking to a server"), flags=re.S)[0]
    for line in (line for line in block.splitlines() if line.strip()):
        done = subprocess.run(_argv(line, quickstart.port), capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
        assert done.returncode == 0, (line, done.stderr)
        if " call " in line:
            assert json.loads(done.stdout)["structuredContent"] == {"result": 3}
        elif " list " in line and "--json" in line:
            assert json.loads(done.stdout)["resourceTemplates"][0]["uriTemplate"] == "users://{user_id}"
        elif " list " in line:
            assert done.stdout.splitlines()[0] == "tools:"


def test_install_examples(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "XDG_CONFIG_HOME"}
    env["HOME"] = str(tmp_path)
    lines = [line for line in _commands_in() if " install " in line and "app.py" not in line]
    assert len(lines) == 3
    for line in lines:
        argv = _argv(line.replace("./claude_desktop_config.json", str(tmp_path / "by-path.json")))
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=REPO_ROOT, env=env)
        assert done.returncode == 0, (line, done.stderr)
    cursor = json.loads((tmp_path / ".cursor" / "mcp.json").read_text())
    assert cursor["mcpServers"]["billing"]["env"] == {"LOG_LEVEL": "debug"}
    by_path = json.loads((tmp_path / "by-path.json").read_text())
    assert by_path["mcpServers"]["billing"]["args"] == ["run", str(QUICKSTART)]


def test_the_inspector_lines_are_what_dev_prints() -> None:
    shown = re.findall(r"```\n(npx .*?)```", _section("dev"), flags=re.S)[0]
    printed = inspector_hint("http://127.0.0.1:8000/mcp").splitlines()[1:]
    assert [line.strip() for line in shown.splitlines()] == [line.strip() for line in printed]
