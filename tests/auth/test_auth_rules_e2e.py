"""CEL authorization rules end to end: ``mcplane run`` with JWT authentication, the SDK client over
Streamable HTTP (both protocol eras), rules over claims and arguments that allow, deny and filter
``tools/list``; denials counted and audited without the rule's name ever reaching the client; and
``mcplane config check`` naming the file, key and column of a rule that does not compile."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
import yaml
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.auth.auth_support import AUDIENCE, HS_SECRET, ISSUER, mint
from tests.conftest import ServerProcess, error_of, mcplane_command, start_server

APP = Path(__file__).with_name("rules_app.py")
RULES = {
    "refunds_under_limit": {"tools": ["refund"], "require": 'args.amount <= 1000 || "treasury" in principal.roles'},
    "finance_only": {"tools": ["ledger"], "require": 'principal.claims.department == "finance"'},
    "acme_only": {"tools": ["acme_*"], "require": 'principal.tenant == "acme"'},
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("rules-e2e")
    config = {
        "auth": {"resource": AUDIENCE, "jwt": {"issuer": ISSUER, "keys": [{"secret": "${env:RULES_E2E_SECRET}"}]}},
        "authorization": {"rules": RULES},
        "audit": {"path": str(tmp / "audit.jsonl")},
    }
    path = tmp / "mcplane.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    started = start_server(APP, tmp_path=tmp, env={"RULES_E2E_SECRET": HS_SECRET}, extra_args=("--config", str(path)))
    yield started
    started.stop()


def _token(subject: str, **claims: Any) -> str:
    now = int(time.time())
    return mint(HS_SECRET, "HS256", sub=subject, iat=now, exp=now + 600, **claims)


ALICE = {"roles": ["billing"], "tenant": "acme", "department": "finance"}
TESS = {"roles": ["treasury"], "tenant": "acme", "department": "treasury"}
CAROL = {"roles": ["billing"], "tenant": "globex"}


async def _calls(server: ServerProcess, subject: str, claims: dict[str, Any], mode: str, *calls: Any) -> list[Any]:
    """Each call is ``(tool, arguments)`` or ``"list"``; one connection for all of them."""
    headers = {"authorization": f"Bearer {_token(subject, **claims)}"}
    results: list[Any] = []
    async with httpx2.AsyncClient(headers=headers) as http:
        with anyio.fail_after(30):
            async with Client(streamable_http_client(server.url, http_client=http), mode=mode) as client:  # type: ignore[arg-type]
                for call in calls:
                    if call == "list":
                        listed = await client.list_tools()
                        results.append(sorted(tool.name for tool in listed.tools))
                    else:
                        results.append(await client.call_tool(*call))
    return results


def _text(result: Any) -> str:
    assert result.is_error is False, result
    return result.content[0].text


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_rule_over_arguments_and_roles(server: ServerProcess, mode: str) -> None:
    small, large = await _calls(server, "alice", ALICE, mode, ("refund", {"amount": 500}), ("refund", {"amount": 5000}))
    assert _text(small) == "refunded 500"
    error = error_of(large)
    assert (error["code"], error["retryable"], error["details"]) == ("forbidden", False, {"kind": "tool"})
    assert "refunds_under_limit" not in json.dumps(large.model_dump(mode="json"))
    [treasury] = await _calls(server, "tess", TESS, mode, ("refund", {"amount": 5000}))
    assert _text(treasury) == "refunded 5000"


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_rules_over_claims_and_tenant(server: ServerProcess, mode: str) -> None:
    ledger, report = await _calls(server, "alice", ALICE, mode, ("ledger", {}), ("acme_report", {}))
    assert (_text(ledger), _text(report)) == ("the ledger", "acme's report")
    denied = await _calls(server, "tess", TESS, mode, ("ledger", {}))  # department "treasury": false
    no_claim = await _calls(server, "carol", CAROL, mode, ("ledger", {}), ("acme_report", {}))  # no department
    for result in (*denied, *no_claim):
        assert error_of(result)["code"] == "forbidden"
        assert "finance_only" not in json.dumps(result.model_dump(mode="json"))


async def test_lists_hide_what_a_rule_without_arguments_denies(server: ServerProcess) -> None:
    [alice] = await _calls(server, "alice", ALICE, "auto", "list")
    [carol] = await _calls(server, "carol", CAROL, "legacy", "list")
    assert alice == ["acme_report", "echo", "ledger", "refund"]
    assert carol == ["echo", "refund"]  # refund's rule reads args: the call decides, so it stays listed


async def test_a_rule_that_cannot_be_evaluated_is_logged_with_its_reason(server: ServerProcess) -> None:
    await _calls(server, "dave", CAROL, "auto", ("ledger", {}))
    with anyio.fail_after(10):
        while True:
            events = [
                json.loads(line)
                for line in server.stderr().splitlines()
                if line.startswith("{") and '"authorization_denied"' in line
            ]
            found = [event for event in events if event.get("subject") == "dave"]
            if found:
                break
            await anyio.sleep(0.05)
    [event] = found
    assert (event["level"], event["rule"], event["outcome"], event["name"]) == (
        "warning",
        "finance_only",
        "error",
        "ledger",
    )
    assert "department" in event["reason"]


async def test_denials_are_counted_by_rule(server: ServerProcess) -> None:
    await _calls(server, "erin", ALICE, "auto", ("refund", {"amount": 1e6}))
    async with httpx.AsyncClient() as http:
        metrics = (await http.get(f"{server.base}/metrics")).text
    assert 'mcplane_rule_denials_total{outcome="false",rule="refunds_under_limit"}' in metrics
    assert 'mcplane_rule_denials_total{outcome="error",rule="finance_only"}' in metrics


def _outcomes(server: ServerProcess, subject: str) -> list[dict[str, Any]]:
    """The outcome records of ``subject``'s calls in the audit log (``audit.jsonl`` beside the config)."""
    records = [
        json.loads(line)
        for audit in sorted(server.stderr_path.parent.glob("audit.jsonl*"))
        for line in audit.read_text(encoding="utf-8").splitlines()
        if line.startswith("{")
    ]
    return [record for record in records if record.get("subject") == subject and record.get("status") != "pending"]


async def test_a_denial_is_audited_as_forbidden(server: ServerProcess) -> None:
    await _calls(server, "frank", ALICE, "auto", ("refund", {"amount": 5000}))
    [outcome] = _outcomes(server, "frank")
    assert (outcome["name"], outcome["status"], outcome["error_code"]) == ("refund", "error", "forbidden")


async def test_the_audit_record_names_the_rule(server: ServerProcess) -> None:
    await _calls(server, "grace", ALICE, "auto", ("refund", {"amount": 5000}))
    [outcome] = _outcomes(server, "grace")
    assert outcome["denied_by"] == "refunds_under_limit"


# ------------------------------------------------------------------ mcplane config check
def test_config_check_names_the_file_the_key_and_the_column(tmp_path: Path) -> None:
    path = tmp_path / "mcplane.yaml"
    path.write_text(
        "authorization:\n"
        "  rules:\n"
        "    big_refunds:\n"
        "      tools: [refund]\n"
        "      require: 'args.amount <= || \"treasury\" in principal.roles'\n",
        encoding="utf-8",
    )
    done = subprocess.run(mcplane_command("config", "check", str(path)), capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.splitlines() == [
        f"mcplane: error: {path}: authorization.rules.big_refunds.require: column 16: extraneous input '||'"
    ]


def test_config_check_passes_a_file_with_rules(tmp_path: Path) -> None:
    path = tmp_path / "mcplane.yaml"
    path.write_text(yaml.safe_dump({"authorization": {"rules": RULES}}, sort_keys=False), encoding="utf-8")
    done = subprocess.run(mcplane_command("config", "check", str(path)), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "layers configured: authorization" in done.stdout
    assert "  authorization rules (compiled): refunds_under_limit, finance_only, acme_only" in done.stdout.splitlines()
