"""server-everything over stdio behind an in-process gateway: names, lists, calls, validation, no leaks."""

from __future__ import annotations

import psutil
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from mcplane import Plane
from mcplane.gateway import Gateway
from tests.gateway.conftest import error_code, everything_command, text_of


def _gateway() -> Plane:
    plane = Gateway.from_config({"upstreams": {"everything": {"endpoints": [{"command": everything_command()[0]}]}}})

    @plane.tool()
    def local_ping() -> str:
        return "pong"

    return plane


async def test_upstream_tools_are_namespaced_merged_and_called_through_the_pipeline() -> None:
    plane = _gateway()
    async with Client(plane.sdk, mode="legacy") as client:
        names = [tool.name for tool in (await client.list_tools()).tools]
        assert names[0] == "local_ping"  # local first, then upstream entries sorted
        upstream = names[1:]
        assert upstream == sorted(upstream)
        assert all(name.startswith("everything__") for name in upstream)
        assert {"everything__echo", "everything__get-sum"} <= set(upstream)

        echo = await client.call_tool("everything__echo", {"message": "hi"})
        assert text_of(echo) == "Echo: hi"
        total = await client.call_tool("everything__get-sum", {"a": 2, "b": 3})
        assert "5" in text_of(total)
        assert text_of(await client.call_tool("local_ping", {})) == "pong"

        # The validate slot checks arguments against the upstream's JSON Schema before any hop.
        bad = await client.call_tool("everything__get-sum", {"a": "two", "b": 3})
        assert error_code(bad) == "invalid_arguments"
        with pytest.raises(MCPError, match="Unknown tool"):  # as for an unknown local tool
            await client.call_tool("everything__nope", {})

        prompts = [prompt.name for prompt in (await client.list_prompts()).prompts]
        assert prompts
        assert all(name.startswith("everything__") for name in prompts)
        resources = (await client.list_resources()).resources
        assert resources
        assert all(r.name.startswith("everything__") for r in resources)
        read = await client.read_resource(str(resources[0].uri))  # URIs are kept as the upstream wrote them
        assert read.contents
        assert str(read.contents[0].uri) == str(resources[0].uri)
        templates = (await client.list_resource_templates()).resource_templates
        assert templates
        assert all(t.name.startswith("everything__") for t in templates)


async def test_policy_comes_from_the_upstream_and_the_fast_path_serves_upstream_tools() -> None:
    plane = _gateway()
    async with Client(plane.sdk, mode="legacy"):
        schema = plane.source_for("everything__get-sum").json_schema
        assert schema is not None
        assert schema["properties"].keys() >= {"a", "b"}
        assert plane.fast.tool_eligible("everything__get-sum")  # 2026-07-28 callers
        assert not plane.fast.tool_eligible("everything__get-sum", modern=False)  # no session to vouch for
        assert plane.fast.tool_eligible("local_ping")


async def test_stdio_upstreams_are_killed_at_shutdown() -> None:
    me = psutil.Process()
    # Servers other tests keep for the whole session are children too: only new ones count here.
    before = {p.pid for p in me.children(recursive=True)}
    plane = _gateway()
    async with Client(plane.sdk, mode="legacy") as client:
        await client.call_tool("everything__echo", {"message": "x"})
        children = [p for p in me.children(recursive=True) if p.pid not in before]
        assert children, "the stdio upstream should run as a child process"
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive
    left = [p for p in me.children(recursive=True) if p.pid not in before]
    assert not [p for p in left if p.status() != psutil.STATUS_ZOMBIE]
    assert not [p for p in children if p.is_running() and p.status() == psutil.STATUS_ZOMBIE]
