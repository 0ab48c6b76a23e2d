"""Lists and rules that read the client: ``tools/list`` hides a tool when a rule that ignores
arguments denies it, and a rule over ``client`` is such a rule: the listing client decides it.
Driven through the official SDK client, in both protocol eras, against a real plane."""

from __future__ import annotations

import pytest
from mcp import Client
from mcp_types import Implementation

from mcplane import Plane, PlaneConfig
from tests.conftest import error_of

RULES = {
    "deploy_bot_only": {"tools": ["deploy"], "require": 'client.name == "deploy-bot"'},
    "small_refunds": {"tools": ["refund"], "require": 'args.amount <= 10 && client.name != ""'},
}


def _plane() -> Plane:
    plane = Plane("listing", config=PlaneConfig.model_validate({"authorization": {"rules": RULES}}))

    @plane.tool()
    def deploy(service: str) -> str:
        return f"deployed {service}"

    @plane.tool()
    def refund(amount: int) -> str:
        return f"refunded {amount}"

    @plane.tool()
    def echo(text: str) -> str:
        return text

    return plane


async def _listed_and_called(plane: Plane, client_name: str, mode: str) -> tuple[list[str], bool]:
    info = Implementation(name=client_name, version="1.0")
    async with Client(plane.sdk, client_info=info, mode=mode) as client:  # type: ignore[arg-type]
        names = sorted(tool.name for tool in (await client.list_tools()).tools)
        result = await client.call_tool("deploy", {"service": "web"})
    if result.is_error:
        assert error_of(result)["code"] == "forbidden"
    return names, not result.is_error


@pytest.mark.parametrize("mode", ["2026-07-28", "legacy"])
async def test_a_rule_over_the_client_filters_the_list_as_it_decides_the_call(mode: str) -> None:
    plane = _plane()
    bot = await _listed_and_called(plane, "deploy-bot", mode)
    other = await _listed_and_called(plane, "chat-ui", mode)
    assert bot == (["deploy", "echo", "refund"], True)
    # Hidden from the client the rule denies, and refused to it: the list says what a call would.
    # refund's rule reads arguments too, so only a call can decide it: it stays listed.
    assert other == (["echo", "refund"], False)
