"""``Plane.source_for`` of a gateway tool: found once, kept in step with the upstreams' catalogs."""

from __future__ import annotations

from typing import Any

from mcp_types import Tool

from mcplane import Plane
from mcplane.gateway import UpstreamProvider
from mcplane.gateway.catalog import merge
from mcplane.gateway.config import parse_gateway_config
from mcplane.gateway.upstream import Catalog
from mcplane.tool_policy import EMPTY_SOURCE, ToolSource


def _tool(name: str, *params: str) -> Tool:
    schema: dict[str, Any] = {"type": "object", "properties": {p: {"type": "string"} for p in params}}
    return Tool(name=name, input_schema=schema)


def _gateway() -> tuple[Plane, UpstreamProvider]:
    config = parse_gateway_config(
        {
            "upstreams": {
                "docs": {"endpoints": [{"url": "http://127.0.0.1:9/mcp"}]},
                "files": {"endpoints": [{"url": "http://127.0.0.1:9/mcp"}]},
            }
        }
    )
    plane = Plane("gateway")
    provider = UpstreamProvider(config)
    plane.add_provider(provider)
    provider._plane = plane  # as the lifespan sets it, without connecting
    return plane, provider


def _offer(provider: UpstreamProvider, upstream: str, *tools: Tool) -> None:
    """The upstream's catalog changes, as a refresh changes it (the provider rebuilds and tells the plane)."""
    provider.upstreams[upstream].catalog = Catalog(tools={tool.name: tool for tool in tools})
    provider._rebuild()


def _expected(provider: UpstreamProvider, name: str) -> ToolSource:
    """What scanning the providers finds (the lookup before it was kept)."""
    return provider.source(name) or EMPTY_SOURCE


def test_a_gateway_tools_source_is_found_once_until_the_catalog_changes() -> None:
    plane, provider = _gateway()
    _offer(provider, "docs", _tool("search", "q"))
    asked: list[str] = []
    real = provider.source

    def counting(tool: str) -> ToolSource | None:
        asked.append(tool)
        return real(tool)

    provider.source = counting  # type: ignore[method-assign]
    for _ in range(3):
        assert plane.source_for("docs__search") == ToolSource(
            {"type": "object", "properties": {"q": {"type": "string"}}}, upstream="docs"
        )
    assert asked == ["docs__search"]
    plane.providers_changed()
    plane.source_for("docs__search")
    assert asked == ["docs__search", "docs__search"]


def test_a_name_no_upstream_serves_is_asked_again() -> None:
    plane, provider = _gateway()
    assert plane.source_for("docs__later") is EMPTY_SOURCE
    provider.upstreams["docs"].catalog = Catalog(tools={"later": _tool("later", "x")})
    provider.catalog = merge(provider.upstreams.values(), provider.versions)  # not announced: a miss is not kept
    assert plane.source_for("docs__later").upstream == "docs"


def test_tools_added_removed_renamed_and_moved_on_upstreams_are_looked_up_right() -> None:
    plane, provider = _gateway()
    names = ["docs__search", "docs__find", "docs__fetch", "files__search", "files__read", "docs__nothing"]
    steps: list[tuple[str, tuple[Tool, ...]]] = [
        ("docs", (_tool("search", "q"),)),
        ("docs", (_tool("search", "q"), _tool("fetch", "url"))),  # added
        ("docs", (_tool("search", "q", "limit"), _tool("fetch", "url"))),  # schema changed
        ("docs", (_tool("find", "q", "limit"), _tool("fetch", "url"))),  # renamed
        ("files", (_tool("search", "path"), _tool("read", "path"))),  # another upstream
        ("docs", (_tool("fetch", "url"),)),  # removed
        ("files", ()),  # all gone
        ("docs", (_tool("search", "query"),)),  # back, with another schema
    ]
    for upstream, tools in steps:
        _offer(provider, upstream, *tools)
        for _ in range(2):  # the second round from what was kept
            for name in names:
                assert plane.source_for(name) == _expected(provider, name), (upstream, name)
    assert plane.source_for("docs__search").json_schema == {
        "type": "object",
        "properties": {"query": {"type": "string"}},
    }
    assert plane.source_for("files__read") is EMPTY_SOURCE


def test_a_local_tool_still_wins_over_a_kept_gateway_source() -> None:
    plane, provider = _gateway()
    _offer(provider, "docs", _tool("search", "q"))
    provider.upstreams["docs"].namespace = None  # exposed as they are
    provider._rebuild()
    assert plane.source_for("search").upstream == "docs"

    @plane.tool(name="search")
    async def search(q: str) -> str:
        return q

    assert plane.source_for("search").upstream is None
