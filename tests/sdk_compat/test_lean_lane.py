"""The gateway's lean lane: it sends an upstream what the SDK client sends (request building: the
session's stamp, headers, the caller's envelope) and hands the caller what the SDK client's path
hands back (answer reading: results, errors, event streams, garbled or failed answers)."""

from __future__ import annotations

from typing import Any

import pytest

from mcplane.gateway import Gateway
from tests.gateway.test_lean import fake_upstream
from tests.sdk_compat.wire import Era, http_peer, tool_call

TOOLS = ("ok", "rpc_error", "rpc_invalid", "typed_error", "sse", "garbage", "http_500", "tool_error")


async def one_call(lean: bool, mode: str, caller: Era, tool: str) -> tuple[Any, list[dict[str, Any]], int | None]:
    """The caller's answer, what the upstream got, and the calls the lean lane served."""
    async with fake_upstream() as (url, fake):
        upstream = {
            "endpoints": [{"url": url}],
            "mode": mode,
            "retries": {"attempts": 1},
            "breaker": {"failures": 100},
            "headers": {"X-Api-Key": "k1"},
            "lean": lean,
        }
        plane = Gateway.from_config({"server": {"default_timeout": "20s"}, "upstreams": {"fake": upstream}})
        async with http_peer(plane, fast=True, modern=caller == "http-2026") as peer:
            answer = await peer.call(tool_call(f"fake__{tool}", {"q": tool, "ü": [1, None]}))
            (endpoint,) = Gateway.provider_of(plane).upstreams["fake"].endpoints
            served = endpoint.lean.served if endpoint.lean is not None else None
    calls = [{key: value for key, value in call.items() if key != "id_type"} for call in fake.calls]
    return answer, calls, served


@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize("caller", ["http-2026", "http-2025"])
@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_the_lean_lane_sends_and_answers_as_the_sdk_client(mode: str, caller: Era, tool: str) -> None:
    lean_answer, lean_sent, lean_served = await one_call(True, mode, caller, tool)
    sdk_answer, sdk_sent, sdk_served = await one_call(False, mode, caller, tool)
    assert lean_sent == sdk_sent
    assert len(lean_sent) == 1
    assert lean_answer == sdk_answer
    assert sdk_served is None
    assert lean_served == (1 if tool in ("ok", "sse", "tool_error") else 0)  # errors are raised, not served
