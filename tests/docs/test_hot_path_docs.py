"""docs/hot-path.md, checked: each rule the page states is the decision the hot path makes."""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import Context as SDKContext
from tests.conftest import REPO_ROOT

from mcplane import Plane

DOC = (REPO_ROOT / "docs" / "hot-path.md").read_text(encoding="utf-8")
RULES = DOC.split("<!-- hot-path-rules -->\n", 1)[1].split("\n\n", 1)[0]


def _plane() -> Plane:
    plane = Plane("hot")

    @plane.tool()
    def plain(x: int) -> int:
        return x

    @plane.tool()
    async def with_context(x: int, ctx: SDKContext) -> int:  # pyright: ignore[reportMissingTypeArgument, reportUnknownParameterType]
        return x

    @plane.tool(task=True)
    async def as_task(x: int) -> int:
        return x

    @plane.tool(input_schema={"type": "object", "properties": {"x": {"type": "integer"}}})
    def hand_written(x: int) -> int:
        return x

    return plane


def _call(name: str, **params: Any) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": name, "arguments": {"x": 1}, **params},
    }


def test_the_page_names_each_rule() -> None:
    for phrase in (
        "`tools/call`",
        "`Context`",
        "`InputRequiredResult`",
        "`task=True`",
        "`input_schema=`",
        "`Mcp-Param`",
    ):
        assert phrase in RULES
    assert "`http.fast_path: false`" in RULES


def test_tool_rules_are_the_decisions_made() -> None:
    fast = _plane().fast
    assert fast.tool_eligible("plain")
    assert not fast.tool_eligible("with_context")  # "the tool takes a Context parameter"
    assert not fast.tool_eligible("as_task")  # "the tool can become a task"
    assert not fast.tool_eligible("hand_written")  # "a hand-written input schema"


def test_request_rules_are_the_decisions_made() -> None:
    fast = _plane().fast
    assert fast.match(_call("plain"), modern=False) is not None
    assert fast.match({**_call("plain"), "method": "tools/list"}, modern=False) is None  # only tools/call
    assert fast.match(_call("plain", _meta={"progressToken": "p"}), modern=False) is None  # a progress token
    assert fast.match(_call("plain", task={"ttl": 5}), modern=False) is None  # params besides name/arguments/_meta
    assert fast.match(_call("plain", _meta={"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}), modern=False)
    assert fast.match(_call("plain"), modern=True) is None  # a 2026-07-28 request without _meta


def test_sdk_middleware_turns_it_off_unless_declared_transparent() -> None:
    plane = _plane()

    async def middleware(ctx: Any, call_next: Any) -> Any:
        return await call_next(ctx)

    plane.sdk._lowlevel_server.middleware.append(middleware)  # pyright: ignore[reportPrivateUsage, reportArgumentType]
    assert plane.fast.match(_call("plain"), modern=False) is None
    plane.fast.transparent(middleware)
    assert plane.fast.match(_call("plain"), modern=False) is not None
