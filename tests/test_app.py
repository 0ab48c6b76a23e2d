"""The Plane in process: registration, the pipeline it routes calls through, its lifespan."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from mcp import Client, MCPError

from mcplane import Call, ConfigError, Inject, Plane
from mcplane.pipeline import CallNext
from mcplane.tool_policy import ToolPolicy
from tests.conftest import error_of


def _plane() -> Plane:
    plane = Plane("app-test", default_timeout="50ms")

    @plane.tool()
    def add(a: int, b: int) -> int:
        return a + b

    @plane.tool()
    async def hang() -> str:
        await anyio.Event().wait()
        return "unreachable"

    return plane


async def test_a_slot_set_after_construction_takes_effect() -> None:
    plane = _plane()
    seen: list[str] = []

    async def audit(call: Call, call_next: CallNext) -> Any:
        seen.append(f"{call.kind}:{call.name}")
        return await call_next(call)

    async with Client(plane.sdk) as client:
        assert (await client.call_tool("add", {"a": 1, "b": 2})).structured_content == {"result": 3}
        plane.pipeline.set("audit", audit)
        assert (await client.call_tool("add", {"a": 2, "b": 2})).structured_content == {"result": 4}
        plane.pipeline.set("audit", None)
        await client.call_tool("add", {"a": 3, "b": 2})
    assert seen == ["tool:add"]


async def test_the_default_timeout_bounds_tools_without_their_own() -> None:
    async with Client(_plane().sdk) as client:
        result = await client.call_tool("hang", {})
    assert result.is_error is True
    assert error_of(result)["code"] == "timeout"


async def test_unknown_tool_through_dispatch_is_a_protocol_error() -> None:
    async with Client(_plane().sdk) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("missing", {})
    data = caught.value.error.data
    assert caught.value.error.code == -32602
    assert {k: v for k, v in data.items() if k != "correlation_id"} == {
        "code": "not_found",
        "message": "Unknown tool: missing",
        "retryable": False,
    }
    assert re.fullmatch(r"[0-9a-f]{16}", data["correlation_id"])  # the full error object, as for every failure


async def test_lifespan_is_reentrant_and_opens_dependencies_once() -> None:
    plane = Plane("lifespan-test")
    events: list[str] = []

    @plane.dependency
    async def pool() -> AsyncIterator[str]:
        events.append("open")
        try:
            yield "pool"
        finally:
            events.append("close")

    @plane.tool()
    async def use(p: str = Inject(pool)) -> str:
        return p

    async with plane.lifespan() as outer:
        assert outer == {"pool": "pool"}
        async with plane.lifespan() as inner:
            assert inner is outer
        assert events == ["open"], "an inner user leaving does not close what the outer still uses"
        async with Client(plane.sdk) as client:
            assert (await client.call_tool("use", {})).structured_content == {"result": "pool"}
    assert events == ["open", "close"]


async def test_a_failing_dependency_fails_the_lifespan_and_can_be_retried() -> None:
    plane = Plane("failing")
    attempts: list[int] = []

    @plane.dependency
    async def flaky() -> AsyncIterator[int]:
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("not yet")
        yield len(attempts)

    with pytest.raises(ConnectionError):
        async with plane.lifespan():
            pytest.fail("must not start")
    async with plane.lifespan() as opened:
        assert opened == {"flaky": 2}


def test_registration_mistakes_fail_at_decoration_time() -> None:
    plane = Plane("mistakes")

    def tool() -> None: ...

    with pytest.raises(TypeError, match=r"@plane.tool\(\) with parentheses"):
        plane.tool(tool)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"@plane.prompt\(\) with parentheses"):
        plane.prompt(tool)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="tool 'tool' timeout"):
        plane.tool(timeout="soon")(tool)
    with pytest.raises(ConfigError, match="default_timeout"):
        Plane("bad", default_timeout="-1s")


def test_duplicate_dependency_names_are_refused() -> None:
    plane = Plane("dupes")

    async def pool() -> AsyncIterator[int]:
        yield 1

    plane.dependency(pool)
    with pytest.raises(ValueError, match="a dependency named 'pool' is already registered"):
        plane.dependency(pool)


def test_tool_policy_is_recorded() -> None:
    plane = Plane("policy")

    @plane.tool(timeout="250ms", read_only=True)
    def look() -> None: ...

    policy = plane.policy_for("look")
    assert policy.timeout == 0.25
    annotations = plane.source_for("look").annotations
    assert annotations is not None
    assert annotations.read_only_hint is True
    assert plane.policy_for("unknown") == ToolPolicy()
