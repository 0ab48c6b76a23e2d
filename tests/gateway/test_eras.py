"""Protocol eras through the gateway: mcplane upstreams over stdio, Streamable HTTP and WebSocket,
each spoken to in 2025-11-25 (session) or 2026-07-28 (stateless), all called by clients of both
eras (so a 2026-07-28-only upstream serves a 2025-11-25 client); server-everything (2025-11-25
only) over Streamable HTTP called by a 2026-07-28 client; clients of each era one after the other.

(server-everything over stdio with both client eras, through a gateway process: test_cli.)
"""

from __future__ import annotations

import sys
from typing import Any

from mcp import Client

from mcplane.gateway import Gateway
from tests.conftest import REPO_ROOT
from tests.gateway.conftest import UPSTREAM_APP, NodeServer, PlaneServer, error_code, text_of

LEGACY = "2025-11-25"
MODERN = "2026-07-28"
UPSTREAM_MODES = {"legacy": LEGACY, MODERN: MODERN}


def _endpoint(transport: str, server: PlaneServer) -> dict[str, Any]:
    if transport == "stdio":
        return {
            "command": sys.executable,
            "args": ["-m", "mcplane.cli", "run", str(UPSTREAM_APP)],
            "cwd": str(REPO_ROOT),
        }
    return {"url": server.url if transport == "http" else server.ws_url}


async def test_every_transport_and_upstream_era_serves_clients_of_both_eras(plane_http: PlaneServer) -> None:
    upstreams = {
        f"{transport}_{era.replace('-', '')}": {"endpoints": [_endpoint(transport, plane_http)], "mode": mode}
        for transport in ("stdio", "http", "ws")
        for mode, era in UPSTREAM_MODES.items()
    }
    plane = Gateway.from_config({"server": {"default_timeout": "20s"}, "upstreams": upstreams})
    provider = Gateway.provider_of(plane)
    async with Client(plane.sdk, mode="legacy") as legacy, Client(plane.sdk, mode=MODERN) as modern:
        assert legacy.protocol_version == LEGACY
        assert modern.protocol_version == MODERN
        for name in upstreams:
            upstream_era = MODERN if name.endswith(MODERN.replace("-", "")) else LEGACY
            (endpoint,) = provider.upstreams[name].endpoints
            assert endpoint.sdk is not None
            assert endpoint.sdk.protocol_version == upstream_era, name
            for client in (legacy, modern):
                names = {tool.name for tool in (await client.list_tools()).tools}
                assert {f"{name}__add", f"{name}__era"} <= names
                assert text_of(await client.call_tool(f"{name}__add", {"a": 2, "b": 3})) == "5", name
                # The upstream got the call in its own era, whatever the caller's.
                expected = MODERN if upstream_era == MODERN else "legacy"
                assert text_of(await client.call_tool(f"{name}__era", {})) == expected, name
                # The caller's deadline crosses the era change.
                left = await client.call_tool(f"{name}__remaining_ms", {}, meta={"mcplane/timeout_ms": 4000})
                assert 0 < int(text_of(left)) <= 4000, name
                bad = await client.call_tool(f"{name}__add", {"a": "two", "b": 3})
                assert error_code(bad) == "invalid_arguments", name


async def test_server_everything_over_http_serves_a_2026_client(everything_http: NodeServer) -> None:
    upstream = {"endpoints": [{"url": everything_http.url}]}  # mode auto: it answers only 2025-11-25
    plane = Gateway.from_config({"server": {"default_timeout": "20s"}, "upstreams": {"everything": upstream}})
    (endpoint,) = Gateway.provider_of(plane).upstreams["everything"].endpoints
    async with Client(plane.sdk, mode=MODERN) as client:
        assert client.protocol_version == MODERN
        assert endpoint.sdk is not None
        assert endpoint.sdk.protocol_version == LEGACY
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert {"everything__echo", "everything__get-sum"} <= names
        assert text_of(await client.call_tool("everything__echo", {"message": "hi"})) == "Echo: hi"
        assert "7" in text_of(await client.call_tool("everything__get-sum", {"a": 3, "b": 4}))
        prompts = (await client.list_prompts()).prompts
        assert prompts
        assert all(prompt.name.startswith("everything__") for prompt in prompts)
        resources = (await client.list_resources()).resources
        assert resources
        read = await client.read_resource(str(resources[0].uri))
        assert read.contents


async def test_clients_of_each_era_one_after_the_other_find_the_upstreams_connected() -> None:
    # The last client leaving closes the upstream connections; the next one opens them again.
    command = {
        "command": sys.executable,
        "args": ["-m", "mcplane.cli", "run", str(UPSTREAM_APP)],
        "cwd": str(REPO_ROOT),
    }
    plane = Gateway.from_config({"server": {"default_timeout": "20s"}, "upstreams": {"up": {"endpoints": [command]}}})
    (endpoint,) = Gateway.provider_of(plane).upstreams["up"].endpoints
    for round_, mode in enumerate(("legacy", MODERN, "legacy"), start=1):
        async with Client(plane.sdk, mode=mode) as client:
            assert text_of(await client.call_tool("up__add", {"a": round_, "b": 1})) == str(round_ + 1), mode
            assert endpoint.connections == round_
