"""``mcplane config check``: plane files as before, gateway files through the gateway's loader."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli.conftest import Outcome, assert_one_line_error
from tests.conftest import REPO_ROOT


def test_the_example_gateway_file(cli: Callable[..., Outcome]) -> None:
    outcome = cli("config", "check", str(REPO_ROOT / "examples" / "gateway" / "gateway.yaml"))
    assert outcome.returncode == 0, outcome.stderr
    lines = outcome.stdout.splitlines()
    assert lines[0].endswith("gateway.yaml (gateway config)")
    assert "  upstreams: 1" in lines
    [everything] = [line for line in lines if line.startswith("    everything:")]
    assert "tools as everything__*" in everything
    assert "stdio:npx" in everything
    assert "layers configured: rate_limit" in outcome.stdout


def test_the_multi_agent_gateway_file(cli: Callable[..., Outcome]) -> None:
    outcome = cli("config", "check", str(REPO_ROOT / "examples" / "multi-agent" / "gateway.yaml"))
    assert outcome.returncode == 0, outcome.stderr
    assert "  upstreams: 2" in outcome.stdout.splitlines()
    assert "regulatory: tools as regulatory__*; 1 endpoint(s): http://127.0.0.1:8101/mcp" in outcome.stdout
    assert "compliance: tools as compliance__*" in outcome.stdout


def test_an_upstream_under_its_own_names(cli: Callable[..., Outcome], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONFORMANCE_UPSTREAM_URL", "http://127.0.0.1:9/mcp")
    outcome = cli("config", "check", str(REPO_ROOT / "examples" / "conformance" / "gateway.yaml"))
    assert outcome.returncode == 0, outcome.stderr
    assert "tools under their own names" in outcome.stdout
    assert "None__" not in outcome.stdout


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("upstreams: {a: {endpoints: []}}\n", "upstreams.a.endpoints: List should have at least 1 item"),
        (
            "upstreams:\n  a: {endpoints: [{url: 'http://127.0.0.1:1/mcp'}], depends_on: {'*': [b]}}\n",
            "upstreams.a.depends_on.*: unknown upstream 'b'",
        ),
        ("server: {nmae: x}\nupstreams: {}\n", "server.nmae: Extra inputs are not permitted"),
    ],
)
def test_a_broken_gateway_file_is_one_line(
    cli: Callable[..., Outcome], tmp_path: Path, text: str, expected: str
) -> None:
    file = tmp_path / "gateway.yaml"
    file.write_text(text)
    outcome = cli("config", "check", str(file))
    assert_one_line_error(outcome, expected)
    assert outcome.stdout == ""


def test_tool_integrity_is_described_and_its_lock_file_read(cli: Callable[..., Outcome], tmp_path: Path) -> None:
    file = tmp_path / "gateway.yaml"
    lock = tmp_path / "gateway.lock.json"
    upstreams = "upstreams: {a: {endpoints: [{url: 'http://127.0.0.1:1/mcp'}]}}\n"
    file.write_text(upstreams)
    outcome = cli("config", "check", str(file))
    assert "  tool integrity: pinned at first sight; on change: quarantine; scan findings: flag" in outcome.stdout
    file.write_text(upstreams + f"integrity: {{mode: lock, lock_file: '{lock}', scan: {{on_finding: block}}}}\n")
    outcome = cli("config", "check", str(file))
    assert_one_line_error(outcome, "integrity.lock_file: cannot read")
    assert outcome.stdout == ""
    lock.write_text('{"version": 1, "tools": [{"upstream": "a", "tool": "t", "hash": "sha256:00"}]}')
    outcome = cli("config", "check", str(file))
    assert outcome.returncode == 0, outcome.stderr
    expected = (
        "  tool integrity: only tools in the lock file; on change: quarantine; scan findings: block; "
        f"lock file {lock}: 1 pin(s)"
    )
    assert expected in outcome.stdout.splitlines()


def test_catalog_search_is_described(cli: Callable[..., Outcome], tmp_path: Path) -> None:
    file = tmp_path / "gateway.yaml"
    upstreams = "upstreams: {a: {endpoints: [{url: 'http://127.0.0.1:1/mcp'}]}}\n"
    file.write_text(upstreams)
    assert "  tool discovery: every tool listed" in cli("config", "check", str(file)).stdout.splitlines()
    file.write_text(upstreams + "discovery: {mode: search, always_list: ['a__get*'], max_results: 5}\n")
    outcome = cli("config", "check", str(file))
    assert outcome.returncode == 0, outcome.stderr
    expected = "  tool discovery: search (search_tools and call_tool listed; at most 5 results); also listed: a__get*"
    assert expected in outcome.stdout.splitlines()
    file.write_text(upstreams + "discovery: {mode: find}\n")
    assert_one_line_error(cli("config", "check", str(file)), "discovery.mode: Input should be 'list' or 'search'")


def test_a_plane_file_is_still_a_plane_file(cli: Callable[..., Outcome], tmp_path: Path) -> None:
    file = tmp_path / "mcplane.yaml"
    file.write_text("cache: {enabled: true}\n")
    outcome = cli("config", "check", str(file))
    assert outcome.returncode == 0, outcome.stderr
    assert "gateway" not in outcome.stdout
    assert "layers configured: cache" in outcome.stdout
    file.write_text("cache: {enabled: true}\nupstream: {}\n")
    assert_one_line_error(cli("config", "check", str(file)), "upstream: Extra inputs are not permitted")
