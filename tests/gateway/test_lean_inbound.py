"""Upstream tools take mcplane's hot path on the gateway's inbound side, answering what the SDK path answers."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
import pytest

from mcplane.gateway import Gateway
from mcplane.transports.http import HTTPApp, HTTPOptions
from tests.conftest import wire_error_of
from tests.gateway.conftest import PlaneServer
from tests.test_fastpath import LEGACY, body_of, legacy_headers, modern_call, modern_headers, scrub


@pytest.fixture(params=[True, False], ids=["fast", "sdk"])
def fast(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@asynccontextmanager
async def gateway(upstream: PlaneServer, fast: bool) -> AsyncGenerator[tuple[httpx.AsyncClient, HTTPApp]]:
    plane = Gateway.from_config(
        {"server": {"default_timeout": "20s"}, "upstreams": {"up": {"endpoints": [{"url": upstream.url}]}}}
    )
    app = HTTPApp(plane, HTTPOptions(fast_path=fast))
    async with app.running():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            yield http, app


CASES = [
    ("up__add", {"a": 2, "b": 3}),  # success
    ("up__add", {"a": "x", "b": 1}),  # invalid arguments (the gateway checks the upstream's inputSchema)
    ("up__nope", {}),  # an unknown tool: the gateway answers not_found on either path
    ("up__attempts_of", {"name": "x"}),
]


async def test_upstream_calls_take_the_hot_path_with_the_sdks_answers(plane_http: PlaneServer, fast: bool) -> None:
    answers: list[Any] = []
    async with gateway(plane_http, fast) as (http, app):
        for name, arguments in CASES:
            response = await http.post("/mcp", json=modern_call(name, arguments), headers=modern_headers(name))
            answers.append((response.status_code, scrub(body_of(response))))
        served = app.plane.fast.served
    assert served == (4 if fast else 0)
    key = "modern"
    if key in EXPECTED:
        assert answers == EXPECTED[key]
    else:
        EXPECTED[key] = answers
    assert answers[0][1]["result"]["structuredContent"] == {"result": 5}
    assert wire_error_of(answers[1][1]["result"])["code"] == "invalid_arguments"
    unknown = answers[2][1]["error"]
    assert unknown["code"] == -32602
    assert unknown["data"]["code"] == "not_found"
    assert unknown["data"]["retryable"] is False


EXPECTED: dict[str, Any] = {}
CLIENT = {"name": "t", "version": "1"}


async def _session(http: httpx.AsyncClient, capabilities: dict[str, Any]) -> str:
    init = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": LEGACY,
            "capabilities": capabilities,
            "clientInfo": {"name": "t", "version": "1"},
        },
    }
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    response = await http.post("/mcp", json=init, headers=headers)
    session = response.headers["mcp-session-id"]
    headers |= {"mcp-session-id": session, "mcp-protocol-version": LEGACY}
    note = await http.post("/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
    assert note.status_code == 202
    return session


async def test_legacy_sessions_take_the_hot_path_unless_they_could_be_asked(plane_http: PlaneServer) -> None:
    call = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {"name": "up__add", "arguments": {"a": 1, "b": 2}},
    }
    async with gateway(plane_http, True) as (http, app):
        fast = app.plane.fast
        plain = await _session(http, {})
        answer = body_of(await http.post("/mcp", json=call, headers=legacy_headers(plain)))
        assert fast.served == 1
        # A client that can answer an upstream's question (elicitation) keeps the SDK's request context.
        asking = await _session(http, {"elicitation": {}})
        assert body_of(await http.post("/mcp", json=call, headers=legacy_headers(asking))) == answer
        assert fast.served == 1
    assert answer["id"] == 7
    assert answer["result"]["structuredContent"] == {"result": 3}


async def test_the_list_changed_relay_leaves_the_hot_path_on(plane_http: PlaneServer) -> None:
    async with gateway(plane_http, True) as (http, app):
        fast = app.plane.fast
        relay_installed = [m for m in app.plane.sdk._lowlevel_server.middleware if type(m).__name__ == "method"]  # pyright: ignore[reportPrivateUsage]
        assert relay_installed, "the gateway's list-changed relay is an SDK middleware"
        assert fast.enabled
        response = await http.post(
            "/mcp", json=modern_call("up__add", {"a": 1, "b": 1}), headers=modern_headers("up__add")
        )
        assert orjson.loads(response.content)["result"]["structuredContent"] == {"result": 2}
        assert fast.served == 1
