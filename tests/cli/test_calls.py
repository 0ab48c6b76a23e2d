"""``mcplane call``, ``list``, ``read`` and ``prompt`` against real servers, with auth on and off."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from collections.abc import Callable

import pytest

from tests.cli.conftest import AUTH_APP, AuthServer, Outcome, assert_one_line_error
from tests.conftest import QUICKSTART, REPO_ROOT, ServerProcess, mcplane_command


def _json(outcome: Outcome) -> dict[str, object]:
    assert outcome.returncode == 0, outcome.stderr
    assert "Traceback" not in outcome.stderr
    return json.loads(outcome.stdout)


@pytest.fixture(autouse=True)
def _no_ambient_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MCPLANE_TOKEN", raising=False)


# ------------------------------------------------------------------ list
def test_list_prints_every_kind(cli: Callable[..., Outcome], quickstart: ServerProcess) -> None:
    outcome = cli("list", quickstart.url)
    assert outcome.returncode == 0, outcome.stderr
    lines = outcome.stdout.splitlines()
    assert lines[0] == "tools:"
    assert any(line.split() == ["add", "Add", "two", "integers."] for line in lines)
    assert any(line.split()[:1] == ["fetch_user"] for line in lines)
    assert "resources: none" in lines
    assert "resource templates:" in lines
    assert any(line.split() == ["users://{user_id}", "user_profile"] for line in lines)
    assert lines[lines.index("prompts:") + 1].strip() == "summarize(topic)"


def test_list_one_kind_as_json_over_websocket(cli: Callable[..., Outcome], quickstart: ServerProcess) -> None:
    found = _json(cli("list", quickstart.ws_url, "--kind", "tools", "--json"))
    assert list(found) == ["tools"]
    tools = {tool["name"]: tool for tool in found["tools"]}  # type: ignore[union-attr]
    assert set(tools) == {"add", "fetch_user"}
    assert tools["add"]["inputSchema"]["required"] == ["a", "b"]
    templates = _json(cli("list", quickstart.url, "--kind", "templates", "--json"))
    assert [t["uriTemplate"] for t in templates["resourceTemplates"]] == ["users://{user_id}"]  # type: ignore[union-attr]


def test_list_a_target_over_stdio(cli: Callable[..., Outcome]) -> None:
    outcome = cli("list", str(QUICKSTART.relative_to(REPO_ROOT)), "--kind", "prompts")
    assert outcome.returncode == 0, outcome.stderr
    assert outcome.stdout.splitlines() == ["prompts:", "  summarize(topic)"]


def test_list_a_server_without_prompts(cli: Callable[..., Outcome], auth_server: AuthServer) -> None:
    outcome = cli("list", auth_server.server.url, "--token", auth_server.api_key)
    assert outcome.returncode == 0, outcome.stderr
    assert "prompts: none" in outcome.stdout.splitlines()


# ------------------------------------------------------------------ read and prompt
def test_read_a_resource(cli: Callable[..., Outcome], quickstart: ServerProcess) -> None:
    result = _json(cli("read", quickstart.url, "users://u7"))
    assert result["contents"] == [{"uri": "users://u7", "mimeType": "text/plain", "text": "profile of u7"}]


def test_get_a_prompt_with_arguments(cli: Callable[..., Outcome], quickstart: ServerProcess) -> None:
    result = _json(cli("prompt", quickstart.ws_url, "summarize", "--arg", "topic=invoices=paid"))
    [message] = result["messages"]  # type: ignore[misc]
    assert message["role"] == "user"
    assert "invoices=paid" in message["content"]["text"]


def test_read_and_prompt_failures_are_one_line(cli: Callable[..., Outcome], quickstart: ServerProcess) -> None:
    assert_one_line_error(cli("read", quickstart.url, "nowhere://x"), "read failed: MCPError:")
    assert_one_line_error(cli("prompt", quickstart.url, "no_such_prompt"), "prompt failed: MCPError:")
    no_value = cli("prompt", quickstart.url, "summarize", "--arg", "topic")
    assert_one_line_error(no_value, "--arg 'topic': expected NAME=VALUE")


# ------------------------------------------------------------------ auth
def test_without_credentials_the_refusal_says_how_to_give_them(
    cli: Callable[..., Outcome], auth_server: AuthServer
) -> None:
    for endpoint in (auth_server.server.url, auth_server.server.ws_url):
        assert_one_line_error(cli("call", endpoint, "whoami"), "--token TOKEN, $MCPLANE_TOKEN or --header")
    wrong = cli("call", auth_server.server.url, "whoami", "--token", "not-a-key")
    assert_one_line_error(wrong, "invalid_token; give them with --token")


@pytest.mark.parametrize("transport", ["http", "ws"])
def test_token_api_key_and_jwt(cli: Callable[..., Outcome], auth_server: AuthServer, transport: str) -> None:
    endpoint = auth_server.server.url if transport == "http" else auth_server.server.ws_url
    by_key = _json(cli("call", endpoint, "whoami", "--token", auth_server.api_key))
    assert by_key["structuredContent"] == {"result": "cli-key-user"}
    by_jwt = _json(cli("call", endpoint, "whoami", "--token", auth_server.jwt(f"jwt-{transport}")))
    assert by_jwt["structuredContent"] == {"result": f"jwt-{transport}"}


@pytest.mark.parametrize("transport", ["http", "ws"])
def test_token_from_the_environment(
    cli: Callable[..., Outcome], auth_server: AuthServer, monkeypatch: pytest.MonkeyPatch, transport: str
) -> None:
    endpoint = auth_server.server.url if transport == "http" else auth_server.server.ws_url
    monkeypatch.setenv("MCPLANE_TOKEN", auth_server.jwt("from-env"))
    assert _json(cli("call", endpoint, "whoami"))["structuredContent"] == {"result": "from-env"}
    # --token wins over the environment
    explicit = _json(cli("call", endpoint, "whoami", "--token", auth_server.api_key))
    assert explicit["structuredContent"] == {"result": "cli-key-user"}
    listed = cli("list", endpoint, "--kind", "tools")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split()[:2] == ["tools:", "whoami"]


@pytest.mark.parametrize("transport", ["http", "ws"])
def test_headers(cli: Callable[..., Outcome], auth_server: AuthServer, transport: str) -> None:
    endpoint = auth_server.server.url if transport == "http" else auth_server.server.ws_url
    by_header = cli("call", endpoint, "whoami", "--header", f"X-API-Key: {auth_server.api_key}")
    assert _json(by_header)["structuredContent"] == {"result": "cli-key-user"}
    bearer = f"Authorization:Bearer {auth_server.jwt('by-header')}"
    # An explicit Authorization header wins over --token.
    both = cli("call", endpoint, "whoami", "--header", bearer, "--token", auth_server.api_key, "--header", "X-A: b")
    assert _json(both)["structuredContent"] == {"result": "by-header"}


def test_token_reaches_a_stdio_server(cli: Callable[..., Outcome], auth_server: AuthServer) -> None:
    command = shlex.join(mcplane_command("run", str(AUTH_APP), "--config", str(auth_server.config)))
    result = _json(cli("call", command, "whoami", "--token", auth_server.jwt("stdio-user")))
    assert result["structuredContent"] == {"result": "stdio-user"}
    assert_one_line_error(cli("call", command, "whoami", "--header", "X-A: b"), "--header applies to http(s)://")


def test_call_in_a_real_process_with_auth(auth_server: AuthServer) -> None:
    done = subprocess.run(
        mcplane_command("call", auth_server.server.url, "whoami"),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "MCPLANE_TOKEN": auth_server.api_key},
        cwd=REPO_ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["structuredContent"] == {"result": "cli-key-user"}
