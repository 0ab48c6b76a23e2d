"""``mcplane install``: each client's config written with absolute paths, merged, previewed, and usable."""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import Outcome, assert_one_line_error
from tests.conftest import QUICKSTART, REPO_ROOT

RELATIVE_QUICKSTART = str(QUICKSTART.relative_to(REPO_ROOT))


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HOME is a temporary directory; the working directory is the repository (relative targets)."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.chdir(REPO_ROOT)
    return tmp_path / "home"


def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _assert_absolute_mcplane(entry: dict[str, Any]) -> None:
    command = Path(entry["command"])
    assert command.is_absolute()
    assert os.access(command, os.X_OK)
    if command.name.startswith("mcplane"):
        assert entry["args"][:1] == ["run"]
    else:  # no console script next to this interpreter: the interpreter and -m
        assert entry["args"][:3] == ["-m", "mcplane.cli", "run"]
    target = Path(entry["args"][entry["args"].index("run") + 1])
    assert target.is_absolute()
    assert target == QUICKSTART


@pytest.mark.parametrize(
    ("client", "key"), [("claude-desktop", "mcpServers"), ("cursor", "mcpServers"), ("vscode", "servers")]
)
def test_each_client_gets_absolute_paths(cli: Callable[..., Outcome], tmp_path: Path, client: str, key: str) -> None:
    path = tmp_path / "config" / f"{client}.json"
    outcome = cli("install", client, RELATIVE_QUICKSTART, "--config-path", str(path), "--env", "A=1", "--env", "B=x=y")
    assert outcome.returncode == 0, outcome.stderr
    assert f"added 'billing' in {path}" in outcome.stdout
    config = _read(path)
    assert list(config) == [key]
    entry = config[key]["billing"]
    _assert_absolute_mcplane(entry)
    assert entry["env"] == {"A": "1", "B": "x=y"}
    if client == "vscode":
        assert entry["type"] == "stdio"
    else:
        assert "type" not in entry


def test_merging_keeps_everything_else(cli: Callable[..., Outcome], tmp_path: Path) -> None:
    path = tmp_path / "claude_desktop_config.json"
    other = {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-everything"]}
    path.write_text(json.dumps({"globalShortcut": "Ctrl+Space", "mcpServers": {"everything": other}}))
    outcome = cli("install", "claude-desktop", RELATIVE_QUICKSTART, "--config-path", str(path), "--name", "quick")
    assert outcome.returncode == 0, outcome.stderr
    config = _read(path)
    assert config["globalShortcut"] == "Ctrl+Space"
    assert config["mcpServers"]["everything"] == other
    assert "env" not in config["mcpServers"]["quick"]
    again = cli("install", "claude-desktop", RELATIVE_QUICKSTART, "--config-path", str(path), "--name", "quick")
    assert f"updated 'quick' in {path}" in again.stdout
    assert set(_read(path)["mcpServers"]) == {"everything", "quick"}


def test_dry_run_prints_and_writes_nothing(cli: Callable[..., Outcome], tmp_path: Path) -> None:
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": {"old": {"command": "x"}}}))
    before = path.read_text()
    outcome = cli("install", "cursor", RELATIVE_QUICKSTART, "--config-path", str(path), "--dry-run")
    assert outcome.returncode == 0, outcome.stderr
    printed = json.loads(outcome.stdout)
    assert set(printed["mcpServers"]) == {"old", "billing"}
    _assert_absolute_mcplane(printed["mcpServers"]["billing"])
    assert path.read_text() == before
    assert "not written" in outcome.stderr


@pytest.mark.parametrize(
    ("client", "where"),
    [
        ("cursor", "home/.cursor/mcp.json"),
        ("claude-desktop", "home/.config/Claude/claude_desktop_config.json"),
        ("vscode", "work/.vscode/mcp.json"),
    ],
)
def test_default_locations(
    cli: Callable[..., Outcome], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, client: str, where: str
) -> None:
    if client == "claude-desktop" and sys.platform != "linux":
        pytest.skip("the Linux location")
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    outcome = cli("install", client, str(QUICKSTART))
    assert outcome.returncode == 0, outcome.stderr
    assert "billing" in json.dumps(_read(tmp_path / where))


def test_the_written_entry_starts_the_server_from_anywhere(
    cli: Callable[..., Outcome], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "claude_desktop_config.json"
    assert cli("install", "claude-desktop", RELATIVE_QUICKSTART, "--config-path", str(path)).returncode == 0
    entry = _read(path)["mcpServers"]["billing"]
    monkeypatch.chdir(tmp_path)  # a client starts it from wherever it likes
    outcome = cli("call", shlex.join([entry["command"], *entry["args"]]), "add", "--args", '{"a": 4, "b": 5}')
    assert outcome.returncode == 0, outcome.stderr
    assert json.loads(outcome.stdout)["structuredContent"] == {"result": 9}


def test_mistakes_are_one_line_and_change_nothing(cli: Callable[..., Outcome], tmp_path: Path) -> None:
    path = tmp_path / "mcp.json"
    path.write_text("{not json")
    assert_one_line_error(
        cli("install", "cursor", RELATIVE_QUICKSTART, "--config-path", str(path)), "is not valid JSON"
    )
    assert path.read_text() == "{not json"
    path.write_text('{"mcpServers": []}')
    assert_one_line_error(
        cli("install", "cursor", RELATIVE_QUICKSTART, "--config-path", str(path)), "expected a JSON object"
    )
    fresh = tmp_path / "fresh.json"
    assert_one_line_error(
        cli("install", "cursor", str(tmp_path / "absent.py"), "--config-path", str(fresh)), "no such file"
    )
    assert_one_line_error(
        cli("install", "cursor", RELATIVE_QUICKSTART, "--env", "NOVALUE", "--config-path", str(fresh)),
        "--env 'NOVALUE'",
    )
    assert not fresh.exists()
