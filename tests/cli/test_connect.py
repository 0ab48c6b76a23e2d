"""How the request commands read an endpoint, a token and headers (no server needed)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import pytest
from mcp import StdioServerParameters

from mcplane.cli.connect import endpoint_of, is_target, parse_headers
from mcplane.errors import ConfigError


def _args(endpoint: str, **given: Any) -> argparse.Namespace:
    options = {"token": None, "header": None, "ca": None, "cert": None, "key": None}
    return argparse.Namespace(endpoint=endpoint, **{**options, **given})


@pytest.fixture(autouse=True)
def _no_ambient_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MCPLANE_TOKEN", raising=False)


def test_headers_are_name_colon_value() -> None:
    assert parse_headers(["X-API-Key: k:with:colons", "X-Empty:"]) == {"X-API-Key": "k:with:colons", "X-Empty": ""}
    for bad in ("no-colon", ": value", "bad name: v"):
        with pytest.raises(ConfigError, match="expected NAME:VALUE"):
            parse_headers([bad])


def test_the_token_becomes_a_bearer_header(monkeypatch: pytest.MonkeyPatch) -> None:
    _, options = endpoint_of(_args("https://x/mcp", token="t1"))
    assert options["headers"] == {"Authorization": "Bearer t1"}
    monkeypatch.setenv("MCPLANE_TOKEN", "from-env")
    assert endpoint_of(_args("ws://x/mcp"))[1]["headers"] == {"Authorization": "Bearer from-env"}
    assert endpoint_of(_args("ws://x/mcp", token="t2"))[1]["headers"] == {"Authorization": "Bearer t2"}
    explicit = endpoint_of(_args("http://x/mcp", token="t3", header=["authorization: Basic abc"]))[1]
    assert explicit["headers"] == {"authorization": "Basic abc"}
    monkeypatch.delenv("MCPLANE_TOKEN")
    assert endpoint_of(_args("http://x/mcp"))[1]["headers"] is None


def test_targets_run_with_this_interpreter() -> None:
    for target in ("examples/quickstart/server.py", "server.py:plane", "pkg.module:plane"):
        assert is_target(target)
        params, options = endpoint_of(_args(target, token="tok"))
        assert isinstance(params, StdioServerParameters)
        assert [params.command, *params.args] == [sys.executable, "-m", "mcplane.cli", "run", target]
        assert params.env == {"MCPLANE_TOKEN": "tok"}
        assert options == {}
    for command in ("npx -y @modelcontextprotocol/server-everything", "my-server", "python server.py"):
        assert not is_target(command)
    params, _ = endpoint_of(_args("python 'my server.py' --flag"))
    assert [params.command, *params.args] == ["python", "my server.py", "--flag"]
    assert params.env is None


def test_network_options_on_stdio_are_refused() -> None:
    with pytest.raises(ConfigError, match="--header applies to http"):
        endpoint_of(_args("python s.py", header=["X-A: b"]))
    with pytest.raises(ConfigError, match="--ca, --cert and --key apply to https"):
        endpoint_of(_args("python s.py", ca="ca.pem"))
    with pytest.raises(ConfigError, match="empty endpoint"):
        endpoint_of(_args("  "))
