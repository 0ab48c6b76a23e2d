"""docs/oauth.md's snippets, run as written: the key commands, the config, the run line, the host's file."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

from mcplane.cli.parser import build_parser
from mcplane.config import load_config

ROOT = Path(__file__).resolve().parents[2]
GUIDE = (ROOT / "docs" / "oauth.md").read_text(encoding="utf-8")
ENV = {"GOOGLE_CLIENT_ID": "1234-example.apps.googleusercontent.com", "GOOGLE_CLIENT_SECRET": "a-client-secret"}


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", GUIDE, flags=re.S)


def test_the_keys_made_by_the_commands_load_in_the_config(tmp_path: Path) -> None:
    subprocess.run(["bash", "-euo", "pipefail", "-c", _blocks("shell")[0]], cwd=tmp_path, check=True, timeout=30)
    config_path = tmp_path / "mcplane.yaml"
    config_path.write_text(_blocks("yaml")[0])
    config = load_config(config_path, environ=ENV)
    assert config.oauth is not None
    assert config.auth is not None
    assert config.oauth.login.preset == "google"
    assert [key.status for key in config.oauth.signing_keys] == ["active"]
    assert len(config.oauth.state_keys[0].get()) == 64
    assert config.auth.oauth_server
    assert config.auth.authorization_servers == [config.oauth.issuer]
    # The host connects to the resource the tokens are bound to.
    host = json.loads(_blocks("json")[0])
    assert host["servers"]["company-tools"]["url"] == config.auth.resource


def test_the_run_line_parses() -> None:
    line = _blocks("shell")[1].strip()
    args = build_parser().parse_args(shlex.split(line)[1:])
    assert (args.command, args.transport, args.config, args.allow_host) == (
        "run",
        "http",
        "mcplane.yaml",
        ["mcp.example.com"],
    )
