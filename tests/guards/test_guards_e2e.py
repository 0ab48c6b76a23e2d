"""Output guards end to end: ``mcplane run`` with a ``guards`` section and a secret reference, the
SDK client over Streamable HTTP in both protocol eras: masked text and structured results, refused
ones, the configured secret found by value, the hit counter and the audit record."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import yaml
from mcp import Client

from tests.conftest import ServerProcess, error_of, start_server
from tests.guards.guard_app import PEM, SECRET_ENV, TOKEN

APP = Path(__file__).with_name("guard_app.py")
SECRET = "correct-horse-battery-staple-0123456789"
GUARDS = {
    "tools": {
        "*": {"mask": ["personal", "credentials"], "refuse": ["private_key"]},
        "show_secret": {"refuse": ["secrets"]},
        "mask_secret": {"mask": ["secrets"]},
    }
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("guards-e2e")
    config = {
        "sessions": {"keys": ["${env:GUARD_E2E_SECRET}"]},  # a secret reference: its value is guarded
        "guards": GUARDS,
        "audit": {"path": str(tmp / "audit.jsonl")},
    }
    path = tmp / "mcplane.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    started = start_server(APP, tmp_path=tmp, env={SECRET_ENV: SECRET}, extra_args=("--config", str(path)))
    yield started
    started.stop()


async def _call(server: ServerProcess, mode: str, *names: str) -> list[Any]:
    with anyio.fail_after(30):
        async with Client(server.url, mode=mode) as client:  # type: ignore[call-arg]
            return [await client.call_tool(name, {}) for name in names]


def _wire(result: Any) -> str:
    return json.dumps(result.model_dump(mode="json", by_alias=True))


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_personal_data_and_credentials_are_masked(server: ServerProcess, mode: str) -> None:
    customer, notes, clean = await _call(server, mode, "customer", "notes", "clean")
    assert customer.structured_content == {
        "name": "Alice",
        "email": "[REDACTED:email]",
        "card": "[REDACTED:card_number]",
        "iban": "[REDACTED:iban]",
    }
    assert json.loads(customer.content[0].text) == customer.structured_content
    assert notes.content[0].text == ("reach [REDACTED:email] or [REDACTED:phone]; deploy token [REDACTED:github_token]")
    for shown in (_wire(customer), _wire(notes)):
        for value in ("alice@example.com", "4111", "DE89", "7946", TOKEN):
            assert value not in shown
    assert clean.content[0].text == "nothing to see"


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_refused_result_is_forbidden_and_says_nothing(server: ServerProcess, mode: str) -> None:
    key, secret = await _call(server, mode, "private_key", "show_secret")
    for result in (key, secret):
        error = error_of(result)
        assert (error["code"], error["message"]) == ("forbidden", "the tool's result was withheld by an output guard")
        assert "details" not in error
        shown = _wire(result)
        for value in (PEM, "MHcCAQEE", SECRET, "private_key", 'secret"'):
            assert value not in shown


async def test_the_configured_secret_is_found_by_value(server: ServerProcess) -> None:
    [masked] = await _call(server, "auto", "mask_secret")
    assert masked.content[0].text == "the database password is [REDACTED:secret]"
    assert SECRET not in _wire(masked)


async def test_hits_are_counted_by_kind_and_action(server: ServerProcess) -> None:
    await _call(server, "auto", "customer", "private_key")
    async with httpx.AsyncClient() as http:
        metrics = (await http.get(f"{server.base}/metrics")).text
    for kind, action in (("email", "mask"), ("card_number", "mask"), ("iban", "mask"), ("private_key", "refuse")):
        assert f'mcplane_guard_hits_total{{action="{action}",kind="{kind}"}}' in metrics


def _outcomes(server: ServerProcess, name: str) -> list[dict[str, Any]]:
    records = [
        json.loads(line)
        for audit in sorted(server.stderr_path.parent.glob("audit.jsonl*"))
        for line in audit.read_text(encoding="utf-8").splitlines()
        if line.startswith("{")
    ]
    return [record for record in records if record.get("name") == name and record.get("status") != "pending"]


async def test_the_audit_records_a_refusal_and_never_a_value(server: ServerProcess) -> None:
    await _call(server, "auto", "private_key", "notes")
    refused = _outcomes(server, "private_key")
    masked = _outcomes(server, "notes")
    assert refused
    assert masked
    assert {(record["status"], record["error_code"]) for record in refused} == {("error", "forbidden")}
    assert {record["status"] for record in masked} == {"ok"}
    audit = "".join(path.read_text() for path in server.stderr_path.parent.glob("audit.jsonl*"))
    for value in ("alice@example.com", TOKEN, "MHcCAQEE", SECRET):
        assert value not in audit


async def test_the_audit_record_notes_findings_by_kind_and_count(server: ServerProcess) -> None:
    await _call(server, "auto", "notes")
    outcome = _outcomes(server, "notes")[-1]
    assert outcome["guards"] == {"email": 2, "github_token": 2, "phone": 2}
    assert outcome["guard_action"] == "mask"
