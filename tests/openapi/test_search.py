"""An OpenAPI upstream behind catalog search: a gateway in ``discovery: {mode: search}`` with the
REST service's document and an MCP upstream, driven by the official SDK client in both eras.
``search_tools`` finds REST operations by what their summary and description say, with their
generated schemas; ``call_tool`` calls one end to end (a real HTTP request) and answers as the
direct call does, errors included."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from mcp import Client
from mcp_types import CallToolResult

from mcplane import Plane
from mcplane.gateway import Gateway
from mcplane.openapi import load_api
from tests.conftest import free_port
from tests.gateway.conftest import UPSTREAM_APP, PlaneServer, text_of
from tests.openapi.conftest import RestService, shop_upstream

MODES = ("legacy", "2026-07-28")


@pytest.fixture(scope="module")
def mcp_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlaneServer]:
    """tests/gateway/upstream_app.py over HTTP: an MCP upstream beside the REST one."""
    server = PlaneServer(UPSTREAM_APP, free_port(), tmp_path_factory.mktemp("mcp") / "upstream.log")
    server.start()
    yield server
    server.stop()


def search_gateway(rest: RestService, mcp: PlaneServer) -> Plane:
    tree = {
        "server": {"default_timeout": "10s"},
        "upstreams": {"shop": shop_upstream(rest), "up": {"endpoints": [{"url": mcp.url}]}},
        "discovery": {"mode": "search", "max_results": 5},
    }
    return Gateway.from_config(tree)


async def found(client: Client, query: str, **options: Any) -> list[dict[str, Any]]:
    result = await client.call_tool("search_tools", {"query": query, **options})
    assert not result.is_error, result
    assert result.structured_content is not None
    assert json.loads(text_of(result)) == result.structured_content
    return result.structured_content["tools"]


def outcome(result: CallToolResult) -> tuple[Any, ...]:
    """What a call answered, without what differs between two calls (the correlation id)."""
    body = dict((result.meta or {}).get("mcplane/error") or {})
    body.pop("correlation_id", None)
    return (result.is_error, body, result.structured_content, None if body else text_of(result))


async def test_search_finds_rest_operations_by_their_summary_and_description(
    rest: RestService, mcp_upstream: PlaneServer
) -> None:
    plane = search_gateway(rest, mcp_upstream)
    shop = load_api(shop_upstream(rest)["openapi"])
    for mode in MODES:
        async with Client(plane.sdk, mode=mode) as client:
            assert sorted(t.name for t in (await client.list_tools()).tools) == ["call_tool", "search_tools"], mode
            # Words only the operation's description has ("One page of items, optionally filtered by tags.").
            assert (await found(client, "optionally filtered"))[0]["name"] == "shop__listItems", mode
            # Its summary ("Get one item"), in other words than its name.
            assert (await found(client, "fetch one item"))[0]["name"] == "shop__getItem", mode
            assert (await found(client, "create an item"))[0]["name"] == "shop__createItem", mode
            # Both upstreams are in one index; a namespace keeps to one.
            assert (await found(client, "add"))[0]["name"] == "up__add", mode
            assert {t["name"] for t in await found(client, "item", namespace="shop")} >= {
                "shop__getItem",
                "shop__listItems",
            }
            assert not [t for t in await found(client, "item", namespace="up") if t["name"].startswith("shop__")]

            # Each result is the tool the provider generated: schemas, title, annotations.
            (entry,) = await found(client, "get one item", limit=1)
            tool = shop.operations["getItem"].tool
            assert entry["name"] == "shop__getItem"
            assert entry["title"] == tool.title == "Get one item"
            assert entry["inputSchema"] == tool.input_schema
            assert entry["inputSchema"]["required"] == ["item_id"]
            assert tool.output_schema is not None
            assert entry["outputSchema"] == tool.output_schema
            assert "Item" in entry["outputSchema"]["$defs"]
            assert entry["annotations"]["readOnlyHint"] is True


async def test_call_tool_calls_a_rest_operation_end_to_end(rest: RestService, mcp_upstream: PlaneServer) -> None:
    plane = search_gateway(rest, mcp_upstream)
    for mode in MODES:
        rest.reset()
        async with Client(plane.sdk, mode=mode) as client:
            result = await client.call_tool("call_tool", {"name": "shop__getItem", "arguments": {"item_id": 2}})
            assert not result.is_error, result
            assert result.structured_content == {"id": 2, "name": "item-2", "price": 20, "tags": []}
            seen = rest.stats()["headers"]  # the request the REST service received
            assert seen["authorization"] == "Bearer t0ken", mode
            assert 0 < int(seen["mcplane-timeout-ms"]) <= 10_000

            # A JSON body built from the arguments changes the service's state.
            created = await client.call_tool(
                "call_tool", {"name": "shop__createItem", "arguments": {"name": f"lamp-{mode}", "price": 3}}
            )
            assert created.structured_content is not None, created
            new_id = created.structured_content["id"]
            direct = await client.call_tool("shop__getItem", {"item_id": new_id})
            assert direct.structured_content == created.structured_content

            # The MCP upstream's tool, through call_tool too.
            added = await client.call_tool("call_tool", {"name": "up__add", "arguments": {"a": 2, "b": 3}})
            assert not added.is_error, added
            assert text_of(added) == "5"


@pytest.mark.parametrize(
    ("name", "arguments", "code"),
    [
        ("shop__getItem", {"item_id": 999}, "not_found"),  # 404
        ("shop__createItem", {"name": "x", "price": -1}, "invalid_arguments"),  # 422, the problem details
        ("shop__limited", {}, "rate_limited"),  # 429 with Retry-After
        ("shop__conflict", {}, "upstream_error"),  # 409
        ("shop__getItem", {"item_id": "two"}, "invalid_arguments"),  # refused by the generated schema
    ],
)
async def test_an_api_error_through_call_tool_is_the_direct_calls(
    rest: RestService, mcp_upstream: PlaneServer, name: str, arguments: dict[str, Any], code: str
) -> None:
    plane = search_gateway(rest, mcp_upstream)
    async with Client(plane.sdk, mode="2026-07-28") as client:
        direct = await client.call_tool(name, arguments)
        through = await client.call_tool("call_tool", {"name": name, "arguments": arguments})
    assert direct.is_error
    assert (direct.meta or {})["mcplane/error"]["code"] == code
    assert outcome(through) == outcome(direct)
