"""Names seen from a caller: an upstream exposed without a namespace, names no upstream lists
(``not_found`` with the whole error object, ``dependency_unavailable`` while the upstream they
would belong to is down), and the gateway's own name on every result whatever era its upstream speaks."""

from __future__ import annotations

import sys
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from mcplane import Plane
from mcplane.gateway import Gateway
from mcplane.transports.http import HTTPApp, HTTPOptions
from tests.conftest import REPO_ROOT, error_of, free_port
from tests.gateway.conftest import UPSTREAM_APP, PlaneServer, error_code, text_of
from tests.test_fastpath import LEGACY, MODERN, body_of, legacy_headers, modern_call, modern_headers

WAIT = 20.0
SERVER_INFO = "io.modelcontextprotocol/serverInfo"


def _stdio(**options: Any) -> dict[str, Any]:
    command = {
        "command": sys.executable,
        "args": ["-m", "mcplane.cli", "run", str(UPSTREAM_APP)],
        "cwd": str(REPO_ROOT),
    }
    return {"endpoints": [command], **options}


def _dead(**options: Any) -> dict[str, Any]:
    """An upstream nobody listens for: it never connects."""
    return {
        "endpoints": [{"url": f"http://127.0.0.1:{free_port()}/mcp"}],
        "connect_timeout": "1s",
        "restart": {"initial": "30s"},
        "required": False,
        **options,
    }


def _gateway(upstreams: dict[str, Any], name: str = "the-gateway") -> Plane:
    return Gateway.from_config({"server": {"name": name, "default_timeout": "20s"}, "upstreams": upstreams})


# ----------------------------------------------------------------- an upstream without a namespace
async def test_an_upstream_without_a_namespace_is_exposed_under_its_own_names() -> None:
    plane = _gateway({"root": _stdio(namespace=False), "other": _stdio()})

    @plane.tool()
    def add(a: int, b: int) -> int:  # a local tool wins over the upstream's of the same name
        return 100 + a + b

    async with Client(plane.sdk, mode="legacy") as legacy, Client(plane.sdk, mode=MODERN) as modern:
        for client in (legacy, modern):
            names = [tool.name for tool in (await client.list_tools()).tools]
            assert names[0] == "add"  # local first, then the un-namespaced upstream, then the others
            assert {"hang_write", "attempts_of", "other__add", "other__hang_write"} <= set(names)
            assert not any(name.startswith("root__") for name in names)
            assert text_of(await client.call_tool("add", {"a": 1, "b": 2})) == "103"
            assert text_of(await client.call_tool("other__add", {"a": 1, "b": 2})) == "3"
            assert text_of(await client.call_tool("remaining_ms", {}, meta={"mcplane/timeout_ms": 4000})) != ""
        # A name of the un-namespaced upstream inside another upstream's namespace stays that upstream's.
        assert text_of(await legacy.call_tool("grow", {"name": "other__attempts_of"})) == "grown"
        assert text_of(await legacy.call_tool("grow", {"name": "fresh"})) == "grown"
        with anyio.fail_after(WAIT):
            while "fresh" not in {tool.name for tool in (await legacy.list_tools()).tools}:  # noqa: ASYNC110
                await anyio.sleep(0.05)  # the list-changed re-list, polled under the bound above
        assert text_of(await legacy.call_tool("fresh", {})) == "fresh"
        assert text_of(await legacy.call_tool("other__attempts_of", {"name": "grow"})) == "0"  # other's, not root's


async def test_versions_of_an_upstream_without_a_namespace_name_its_own_tools() -> None:
    plane = Gateway.from_config(
        {
            "server": {"default_timeout": "20s"},
            "upstreams": {"root": _stdio(namespace=False), "other": _stdio()},
            "versions": {"sum": {"versions": {"v1": {"upstream": "root", "tool": "add"}}, "default": "v1"}},
        }
    )
    async with Client(plane.sdk, mode="legacy") as client:
        assert text_of(await client.call_tool("sum", {"a": 2, "b": 2})) == "4"


# ----------------------------------------------------------------- names no upstream lists
def _not_found(exc: MCPError, what: str) -> dict[str, Any]:
    assert exc.code == -32602
    data: Any = exc.data
    assert isinstance(data, dict), exc
    assert (data["code"], data["retryable"]) == ("not_found", False)
    assert data["message"] == exc.message
    assert what in data["message"]
    assert isinstance(data["correlation_id"], str)
    assert data["correlation_id"]
    return data


@pytest.mark.parametrize("era", ["legacy", MODERN])
async def test_unknown_names_are_not_found_with_the_whole_error_object(era: str) -> None:
    plane = _gateway({"up": _stdio(), "root": _stdio(namespace=False)})
    async with Client(plane.sdk, mode=era) as client:  # pyright: ignore[reportArgumentType]
        with pytest.raises(MCPError) as tool:
            await client.call_tool("up__nope", {})
        _not_found(tool.value, "up__nope")
        with pytest.raises(MCPError) as bare:
            await client.call_tool("nope", {})
        _not_found(bare.value, "nope")
        with pytest.raises(MCPError) as prompt:
            await client.get_prompt("up__nope")
        _not_found(prompt.value, "up__nope")
        with pytest.raises(MCPError) as resource:
            await client.read_resource("test://nope")
        assert _not_found(resource.value, "test://nope")["uri"] == "test://nope"


@asynccontextmanager
async def _http(plane: Plane) -> AsyncGenerator[httpx.AsyncClient]:
    app = HTTPApp(plane, HTTPOptions())
    async with app.running():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            yield http


async def _legacy_session(http: httpx.AsyncClient) -> str:
    init = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    session = (await http.post("/mcp", json=init, headers=headers)).headers["mcp-session-id"]
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    await http.post("/mcp", json=note, headers={**headers, "mcp-session-id": session, "mcp-protocol-version": LEGACY})
    return session


async def test_an_unknown_tool_on_the_hot_path_is_not_found_with_the_whole_error_object() -> None:
    plane = _gateway({"up": _stdio()})
    async with _http(plane) as http:
        modern = body_of(await http.post("/mcp", json=modern_call("up__nope", {}), headers=modern_headers("up__nope")))
        session = await _legacy_session(http)
        call = {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "nope", "arguments": {}}}
        legacy = body_of(await http.post("/mcp", json=call, headers=legacy_headers(session)))
        assert plane.fast.served == 2  # both took the hot path
    for answer in (modern, legacy):
        error = answer["error"]
        _not_found(MCPError(error["code"], error["message"], error.get("data")), "nope")


async def test_a_tool_of_an_upstream_that_never_connected_is_dependency_unavailable() -> None:
    plane = _gateway({"up": _stdio(), "dead": _dead(), "root": _dead(namespace=False)})
    async with Client(plane.sdk, mode="legacy") as client:
        dead = await client.call_tool("dead__echo", {"message": "hi"})
        assert error_code(dead) == "dependency_unavailable"
        assert error_of(dead)["details"] == {"dependency": "dead"}
        assert error_of(dead)["retryable"] is True
        root = await client.call_tool("echo", {})  # could be the un-namespaced upstream's: it cannot say
        assert error_of(root)["details"] == {"dependency": "root"}
        with pytest.raises(MCPError) as prompt:
            await client.get_prompt("dead__greeting")
        assert prompt.value.error.data["code"] == "dependency_unavailable"  # pyright: ignore[reportOptionalSubscript, reportIndexIssue]
        assert prompt.value.error.data["details"] == {"dependency": "dead"}  # pyright: ignore[reportOptionalSubscript, reportIndexIssue]
        # The connected upstream's unknown names are still not_found.
        with pytest.raises(MCPError) as missing:
            await client.call_tool("up__nope", {})
        _not_found(missing.value, "up__nope")


# ----------------------------------------------------------------- the gateway's own name on results
def _server_info(result: dict[str, Any]) -> Any:
    return (result.get("_meta") or {}).get(SERVER_INFO)


@pytest.mark.parametrize("path", ["lean", "sdk", "stdio"])
async def test_results_carry_the_gateways_server_info_whatever_the_upstream_speaks(
    plane_http: PlaneServer, path: str
) -> None:
    if path == "stdio":
        upstream = _stdio(mode=MODERN)
    else:
        upstream = {"endpoints": [{"url": plane_http.url}], "mode": MODERN, "lean": path == "lean"}
    plane = _gateway({"up": upstream}, name="the-gateway")
    async with _http(plane) as http:
        hot = body_of(
            await http.post("/mcp", json=modern_call("up__add", {"a": 1, "b": 1}), headers=modern_headers("up__add"))
        )
        asking = modern_call("up__add", {"a": 1, "b": 2})
        asking["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"] = {"elicitation": {}}
        sdk = body_of(await http.post("/mcp", json=asking, headers=modern_headers("up__add")))
        assert plane.fast.served == 1  # a caller that could be asked takes the SDK path
    assert hot["result"]["structuredContent"] == {"result": 2}
    assert sdk["result"]["structuredContent"] == {"result": 3}
    for answer in (hot, sdk):
        assert _server_info(answer["result"])["name"] == "the-gateway"
    async with Client(plane.sdk, mode=MODERN) as client:
        era = await client.call_tool("up__era", {})  # the SDK client (and the lean lane's) relays to a 2026 upstream
        assert text_of(era) == MODERN
        assert (era.meta or {}).get(SERVER_INFO, {}).get("name") == "the-gateway"
