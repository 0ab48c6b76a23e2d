"""Output guards on a gateway: the upstream (``mcplane run``, no guards of its own) answers with
personal data, credentials and a secret; the gateway's guards mask or refuse them, on the lean lane
and through the SDK client alike, and the gateway's own secret references are found by value."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from mcp import Client

from mcplane.gateway import Gateway
from tests.conftest import ServerProcess, error_of, start_server
from tests.guards.guard_app import SECRET_ENV, TOKEN

APP = Path(__file__).with_name("guard_app.py")
SECRET = "gateway-side-secret-value-0123456789"


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("guards-upstream")
    server = start_server(APP, tmp_path=tmp, env={SECRET_ENV: SECRET})
    yield server
    server.stop()


@pytest.mark.parametrize("lean", [True, False])
async def test_the_gateway_guards_its_upstreams_results(
    upstream: ServerProcess, lean: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    config = {
        "guards": {
            "tools": {
                "up__*": {"mask": ["personal", "credentials"], "refuse": ["private_key"]},
                "up__show_secret": {"refuse": ["secrets"]},
                "up__mask_secret": {"mask": ["secrets"]},
            }
        },
        "upstreams": {
            "up": {
                "endpoints": [{"url": upstream.url}],
                "lean": lean,
                "headers": {"X-Upstream-Key": "${env:GUARD_E2E_SECRET}"},  # the gateway's secret reference
            }
        },
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    gateway = Gateway.from_config(path)
    async with Client(gateway.sdk, mode="2026-07-28") as client:
        customer = await client.call_tool("up__customer", {})
        notes = await client.call_tool("up__notes", {})
        key = await client.call_tool("up__private_key", {})
        shown = await client.call_tool("up__show_secret", {})
        masked = await client.call_tool("up__mask_secret", {})
    assert customer.structured_content == {
        "name": "Alice",
        "email": "[REDACTED:email]",
        "card": "[REDACTED:card_number]",
        "iban": "[REDACTED:iban]",
    }
    assert notes.content[0].text == (  # type: ignore[union-attr]
        "reach [REDACTED:email] or [REDACTED:phone]; deploy token [REDACTED:github_token]"
    )
    for refused in (key, shown):
        error = error_of(refused)
        assert (error["code"], error["message"]) == ("forbidden", "the tool's result was withheld by an output guard")
    assert masked.content[0].text == "the database password is [REDACTED:secret]"  # type: ignore[union-attr]
    wire = json.dumps([r.model_dump(mode="json") for r in (customer, notes, key, shown, masked)])
    for value in ("alice@example.com", TOKEN, "MHcCAQEE", SECRET):
        assert value not in wire
