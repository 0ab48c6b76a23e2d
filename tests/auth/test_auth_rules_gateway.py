"""CEL rules on a gateway's upstream tools: the gateway (in process) fronts ``mcplane run``; rules
over arguments, the principal and the client allow, deny and filter ``tools/list`` exactly as for
local tools, in both protocol eras (the client's name from the 2026-07-28 ``_meta`` or from the
2025-11-25 ``initialize``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp import Client
from mcp_types import Implementation

from mcplane.gateway import Gateway
from tests.conftest import ServerProcess, error_of, start_server

APP = Path(__file__).with_name("rules_app.py")
RULES = {
    "small_refunds": {"tools": ["up__refund"], "require": "args.amount <= 1000"},
    "acme_only": {"tools": ["up__acme_*"], "require": 'principal.tenant == "acme"'},
    "agents_only": {"tools": ["up__echo"], "require": 'client.name == "agent-x"'},
}


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("rules-upstream")
    server = start_server(APP, tmp_path=tmp)
    yield server
    server.stop()


@pytest.mark.parametrize("mode", ["2026-07-28", "legacy"])
@pytest.mark.parametrize("lean", [True, False])
async def test_rules_apply_to_upstream_tools(upstream: ServerProcess, lean: bool, mode: str) -> None:
    config = {
        "authorization": {"rules": RULES},
        "upstreams": {"up": {"endpoints": [{"url": upstream.url}], "lean": lean}},
    }
    gateway = Gateway.from_config(config)
    agent = Implementation(name="agent-x", version="1.0")
    async with Client(gateway.sdk, mode=mode, client_info=agent) as client:  # type: ignore[arg-type]
        listed = sorted(tool.name for tool in (await client.list_tools()).tools)
        small = await client.call_tool("up__refund", {"amount": 10})
        large = await client.call_tool("up__refund", {"amount": 10_000})
        report = await client.call_tool("up__acme_report", {})
        echoed = await client.call_tool("up__echo", {"text": "hi"})
    async with Client(gateway.sdk, mode=mode) as other:  # type: ignore[arg-type]
        refused_echo = await other.call_tool("up__echo", {"text": "hi"})
    # acme_only needs no call and denies the anonymous caller: hidden; the others need one: listed
    assert listed == ["up__echo", "up__ledger", "up__refund"]
    assert small.content[0].text == "refunded 10"  # type: ignore[union-attr]
    assert echoed.content[0].text == "hi"  # type: ignore[union-attr]
    for refused in (large, report, refused_echo):
        error = error_of(refused)
        assert (error["code"], error["details"]) == ("forbidden", {"kind": "tool"})
