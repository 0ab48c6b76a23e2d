"""An OpenAPI upstream in ``gateway.yaml``, served by a real ``mcplane gateway`` process, called by the
official Python SDK client (both protocol eras) and the official TypeScript SDK client."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
import yaml
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.conftest import REPO_ROOT
from tests.gateway.conftest import start_gateway, stop_process
from tests.interop.conftest import INTEROP, NODE22, node_env, require
from tests.openapi.conftest import SHOP, RestService, error_body, start_rest

DRIVER = REPO_ROOT / "tests" / "interop" / "ts_client.mjs"
SDK_MODULES = INTEROP / "ts" / "node_modules"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, RestService]]:
    rest = start_rest()
    tmp = tmp_path_factory.mktemp("openapi-gateway")
    config = {
        "server": {"name": "openapi-gateway", "default_timeout": "10s"},
        "upstreams": {
            "shop": {
                "openapi": {
                    "spec": str(SHOP),
                    "base_url": rest.url,
                    "auth": {"bearer": "${env:SHOP_TOKEN}"},
                    "include": {"tags": ["items"]},
                    "health_check": "/health",
                },
                "retries": {"attempts": 2},
            },
            "mine": {  # the caller's own token goes to the API
                "openapi": {"spec": str(SHOP), "base_url": rest.url, "include": {"operations": ["getItem"]}},
                "identity": "forward",
            },
        },
    }
    path = tmp / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    import os

    os.environ["SHOP_TOKEN"] = "t0ken"
    try:
        proc, port = start_gateway(path, tmp / "gateway.stderr")
    finally:
        os.environ.pop("SHOP_TOKEN", None)
    yield f"http://127.0.0.1:{port}/mcp", rest
    stop_process(proc)
    stop_process(rest.proc)


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_python_sdk_client_in_both_eras(gateway: tuple[str, RestService], mode: str) -> None:
    url, _ = gateway
    async with httpx2.AsyncClient() as http, Client(streamable_http_client(url, http_client=http), mode=mode) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert names == {"shop__listItems", "shop__createItem", "shop__getItem", "shop__deleteItem", "mine__getItem"}
        item = await client.call_tool("shop__getItem", {"item_id": 3})
        assert item.structured_content == {"id": 3, "name": "item-3", "price": 30, "tags": []}
        page = await client.call_tool("shop__listItems", {"per_page": 2})
        assert page.structured_content is not None
        assert page.structured_content["next_page"] == 2
        missing = error_body(await client.call_tool("shop__getItem", {"item_id": 404}))
        assert missing["code"] == "not_found"
        assert missing["details"]["status"] == 404
        anonymous = error_body(await client.call_tool("mine__getItem", {"item_id": 1}))
        assert anonymous["code"] == "forbidden"


async def test_the_callers_token_is_forwarded(gateway: tuple[str, RestService]) -> None:
    url, _ = gateway
    async with (
        httpx2.AsyncClient(headers={"authorization": "Bearer t0ken"}) as http,
        Client(streamable_http_client(url, http_client=http), mode="legacy") as client,
    ):
        result = await client.call_tool("mine__getItem", {"item_id": 1})
    assert result.structured_content is not None
    assert result.structured_content["id"] == 1


def test_typescript_sdk_client(gateway: tuple[str, RestService]) -> None:
    require(NODE22, "Node 22")
    require(SDK_MODULES / "@modelcontextprotocol" / "sdk" / "package.json", "@modelcontextprotocol/sdk")
    url, _ = gateway
    plan = {
        "target": {"url": url},
        "cases": {
            "list": [{"op": "listTools"}],
            "get": [{"op": "callTool", "name": "shop__getItem", "arguments": {"item_id": 2}}],
            "page": [{"op": "callTool", "name": "shop__listItems", "arguments": {"per_page": 3, "page": 2}}],
            "missing": [{"op": "callTool", "name": "shop__getItem", "arguments": {"item_id": 999}}],
            "invalid": [{"op": "callTool", "name": "shop__getItem", "arguments": {"item_id": "x"}}],
        },
    }
    completed = subprocess.run(
        [str(NODE22), str(DRIVER), str(SDK_MODULES)],
        input=json.dumps(plan),
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=node_env(),
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    report: dict[str, Any] = json.loads(completed.stdout)
    outcomes = report["outcomes"]
    tools = {t["name"]: t for t in outcomes["list"][0]["result"]["tools"]}
    assert tools["shop__getItem"]["annotations"]["readOnlyHint"] is True
    assert "$defs" in tools["shop__getItem"]["outputSchema"]
    got = outcomes["get"][0]
    assert got["ok"], got
    assert got["result"]["structuredContent"]["name"] == "item-2"
    page = outcomes["page"][0]
    assert page["ok"], page
    assert [i["id"] for i in page["result"]["structuredContent"]["items"]] == [4, 5, 6]
    missing = outcomes["missing"][0]
    assert missing["ok"], missing
    assert missing["result"]["isError"] is True
    assert missing["result"]["_meta"]["mcplane/error"]["code"] == "not_found"
    invalid = outcomes["invalid"][0]
    assert invalid["ok"], invalid
    assert invalid["result"]["_meta"]["mcplane/error"]["code"] == "invalid_arguments"
