"""Fixtures for tests/cli: ``mcplane ARGS`` in this process or in a real one, and a server with auth on."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest
import yaml

from mcplane.auth import generate_api_key
from mcplane.cli import main
from tests.conftest import QUICKSTART, ServerProcess, start_server

AUTH_APP = Path(__file__).with_name("auth_app.py")
ISSUER = "https://login.cli.test"
AUDIENCE = "https://cli.test/mcp"


@dataclass(frozen=True)
class Outcome:
    returncode: int
    stdout: str
    stderr: str


def assert_one_line_error(outcome: Outcome, expected: str, code: int = 1) -> None:
    assert outcome.returncode == code, outcome
    assert "Traceback" not in outcome.stderr
    lines = outcome.stderr.splitlines()
    assert len(lines) == 1, outcome.stderr
    assert lines[0].startswith("mcplane: error: ")
    assert expected in lines[0], lines[0]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Outcome]:
    """``mcplane ARGS`` in this process: the same ``main`` the script runs, without an interpreter start."""
    monkeypatch.setattr(sys, "path", list(sys.path))  # loading a target puts its folder first

    def run(*args: str) -> Outcome:
        try:
            code = main(list(args))
        except SystemExit as exit_:  # argparse's own exits (usage errors, --help)
            code = exit_.code if isinstance(exit_.code, int) else 1
        captured = capsys.readouterr()
        return Outcome(code, captured.out, captured.err)

    return run


@pytest.fixture(scope="session")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The quickstart server (a tool, a resource template, a prompt) over HTTP and WebSocket."""
    server = start_server(QUICKSTART, tmp_path=tmp_path_factory.mktemp("cli-quickstart"))
    yield server
    server.stop()


@dataclass(frozen=True)
class AuthServer:
    """:data:`AUTH_APP` served with an API key and HS256 JWTs accepted, anything else refused."""

    server: ServerProcess
    config: Path
    api_key: str
    jwt_secret: str

    def jwt(self, subject: str) -> str:
        now = int(time.time())
        claims = {"sub": subject, "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 600}
        return jwt.encode(claims, self.jwt_secret, algorithm="HS256")


@pytest.fixture(scope="session")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    tmp = tmp_path_factory.mktemp("cli-auth")
    api_key, digest = generate_api_key()
    secret = uuid.uuid4().hex * 2
    config = tmp / "mcplane.yaml"
    auth = {
        "jwt": {"issuer": ISSUER, "audience": AUDIENCE, "keys": [{"secret": secret}]},
        "api_keys": [{"id": "cli", "hash": digest, "subject": "cli-key-user"}],
    }
    config.write_text(yaml.safe_dump({"auth": auth}))
    server = start_server(AUTH_APP, tmp_path=tmp, extra_args=("--config", str(config)))
    yield AuthServer(server, config, api_key, secret)
    server.stop()
