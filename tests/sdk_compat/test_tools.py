"""A local tool's kept invoker (``sdk_adapter/tools.py``) runs a call exactly as the SDK's ``Tool.run``.

Each tool of a corpus (sync and async, typed and untyped returns, structured output, aliases,
a ``Context`` parameter, tools that fail in each way) is called with each of a set of argument
dicts (valid, missing, extra, wrong-typed, JSON inside strings) by both; the results must be
equal, or both must raise the same exception type with the same text and the same cause.
"""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools.base import Tool
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, ImageContent, TextContent
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from mcplane import Context, Plane
from mcplane.sdk_adapter.mcpserver import local_tool
from mcplane.sdk_adapter.tools import Invoker, LocalTools, invoker_for


class Point(BaseModel):
    x: int
    y: int = 0


class Pair(TypedDict):
    left: str
    right: int


class Loud(str):
    """A ``str`` of another class, as a tool may return one."""


def make_plane() -> Plane:
    plane = Plane("tools-compat")

    @plane.tool()
    async def echo(text: str) -> str:
        return text

    @plane.tool()
    def add(a: int, b: int = 2) -> int:
        return a + b

    @plane.tool()
    async def short(text: str) -> Annotated[str, Field(max_length=3)]:
        return text

    @plane.tool()
    async def mislabeled(n: int) -> str:
        return n  # type: ignore[return-value]

    @plane.tool()
    async def subclassed(text: str) -> str:
        return Loud(text)

    @plane.tool()
    async def total(values: list[int], scale: float = 1.0) -> float:
        return sum(values) * scale

    @plane.tool()
    async def point(p: Point, label: str = "") -> Point:
        return Point(x=p.x + 1, y=p.y) if label != "bad" else p

    @plane.tool()
    async def aliased(from_: Annotated[str, Field(alias="from")], count: int = 1) -> str:
        return from_ * count

    @plane.tool()
    async def untyped(value: Any = None):  # type: ignore[no-untyped-def]
        return value

    @plane.tool()
    async def nothing() -> None:
        return None

    @plane.tool(structured_output=False)
    async def mapping(key: str) -> dict[str, Any]:
        return {key: [1, 2, {"x": None}]}

    @plane.tool()
    async def structured(key: str) -> dict[str, int]:
        return {key: len(key)}

    @plane.tool()
    async def pair(left: str) -> Pair:
        if left == "wrong":
            return {"left": left, "right": "x"}  # type: ignore[typeddict-item]
        return {"left": left, "right": len(left)}

    @plane.tool()
    async def blocks(n: int) -> list[TextContent | ImageContent]:
        return [TextContent(type="text", text=str(i)) for i in range(n)]

    @plane.tool()
    async def whole(error: bool = False) -> CallToolResult:
        return CallToolResult(content=[TextContent(type="text", text="w")], is_error=error)

    @plane.tool()
    async def checked(ok: bool) -> Point:
        if ok:
            return CallToolResult(content=[], structured_content={"x": 1})  # type: ignore[return-value]
        return CallToolResult(content=[], structured_content={"x": "no"})  # type: ignore[return-value]

    @plane.tool()
    async def fails(how: str) -> str:
        if how == "tool":
            raise ToolError("deliberate")
        if how == "value":
            raise ValueError("secret crash text")
        if how == "mcp":
            raise MCPError(code=-32099, message="protocol says no")
        if how == "validation":
            Point.model_validate({"x": "not a number"})
        return how

    @plane.tool()
    async def with_context(text: str, ctx: Context) -> str:
        return f"{text}:{ctx.correlation_id}"

    @plane.tool()
    def sync_fails(text: str) -> str:
        raise RuntimeError(text)

    return plane


CASES: list[tuple[str, dict[str, Any]]] = [
    ("echo", {"text": "hello"}),
    ("echo", {"text": '["a"]'}),  # a str field: never parsed
    ("echo", {}),
    ("echo", {"text": 5}),
    ("echo", {"text": "x", "extra": 1}),
    ("add", {"a": 1}),
    ("add", {"a": "3", "b": "4"}),  # JSON numbers in strings stay strings (then coerced by the model)
    ("add", {"a": "x"}),
    ("add", {"a": 1.5}),
    ("total", {"values": [1, 2, 3]}),
    ("total", {"values": "[1, 2, 3]", "scale": "2"}),  # a JSON array inside a string
    ("echo", {"text": ""}),
    ("echo", {"text": "\ud800 lone, \x00 nul, \u2028 and \U0001f600"}),
    ("short", {"text": "abc"}),
    ("short", {"text": "abcd"}),  # longer than its return annotation allows: refused as the SDK refuses it
    ("mislabeled", {"n": 3}),
    ("subclassed", {"text": "s"}),
    ("total", {"values": "[1, 2"}),  # not JSON: left for the model to refuse
    ("total", {"values": "[" * 5000 + "]" * 5000}),  # JSON the parser refuses
    ("point", {"p": {"x": 1}}),
    ("point", {"p": '{"x": 2, "y": 3}'}),
    ("point", {"p": {"x": "a"}}),
    ("point", {"p": {"x": 1}, "label": "bad"}),
    ("aliased", {"from": "ab", "count": 2}),
    ("aliased", {"from_": "ab"}),
    ("aliased", {"from": "ab", "count": "3"}),
    ("untyped", {"value": {"a": [1, None]}}),
    ("untyped", {"value": '{"a": 1}'}),
    ("untyped", {"value": "plain"}),
    ("untyped", {}),
    ("nothing", {}),
    ("mapping", {"key": "k"}),
    ("structured", {"key": "abc"}),
    ("pair", {"left": "ab"}),
    ("pair", {"left": "wrong"}),
    ("blocks", {"n": 2}),
    ("blocks", {"n": 0}),
    ("whole", {}),
    ("whole", {"error": True}),
    ("checked", {"ok": True}),
    ("checked", {"ok": False}),
    ("fails", {"how": "tool"}),
    ("fails", {"how": "value"}),
    ("fails", {"how": "mcp"}),
    ("fails", {"how": "validation"}),
    ("fails", {"how": "fine"}),
    ("with_context", {"text": "t"}),
    ("sync_fails", {"text": "boom"}),
]


async def _outcome(run: Any) -> tuple[str, Any]:
    try:
        result = await run()
    except Exception as exc:
        cause = exc.__cause__
        error = getattr(exc, "error", None)
        return "raised", (type(exc), str(exc), error, type(cause), str(cause))
    dumped = result.model_dump(by_alias=True, mode="json", exclude_none=True)
    return "returned", (type(result), dumped, result.model_fields_set)


@pytest.mark.parametrize(("name", "arguments"), CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
async def test_the_invoker_runs_a_call_as_the_sdk_does(name: str, arguments: dict[str, Any]) -> None:
    plane = make_plane()
    tool = local_tool(plane.sdk, name)
    assert tool is not None
    invoker = invoker_for(plane.sdk, tool)
    assert isinstance(invoker, Invoker)
    context = plane.make_context(None, None)
    theirs = await _outcome(lambda: tool.run(dict(arguments), context, convert_result=True))
    ours = await _outcome(lambda: invoker(dict(arguments), context))
    assert ours == theirs


async def test_a_changed_output_model_is_read_on_the_next_call() -> None:
    plane = make_plane()
    tool = local_tool(plane.sdk, "structured")
    assert tool is not None
    invoker = invoker_for(plane.sdk, tool)
    assert invoker is not None
    context = plane.make_context(None, None)
    first = await invoker({"key": "ab"}, context)
    assert isinstance(first, CallToolResult)
    assert first.structured_content == {"ab": 2}
    tool.fn_metadata.output_model = dict[str, str]
    theirs = await _outcome(lambda: tool.run({"key": "ab"}, context, convert_result=True))
    ours = await _outcome(lambda: invoker({"key": "ab"}, context))
    assert ours == theirs
    assert ours[0] == "raised"


def test_a_tool_the_sdk_runs_differently_gets_no_invoker() -> None:
    plane = make_plane()
    tool = local_tool(plane.sdk, "echo")
    assert tool is not None

    class Custom(Tool):
        async def run(self, arguments: dict[str, Any], context: Any, convert_result: bool = False) -> Any:
            return await super().run(arguments, context, convert_result)

    custom = Custom.model_validate(tool.model_dump() | {"fn": tool.fn, "fn_metadata": tool.fn_metadata})
    assert invoker_for(plane.sdk, custom) is None


async def test_local_tools_keep_an_invoker_per_registered_tool() -> None:
    plane = make_plane()
    tools = LocalTools(plane.sdk)
    first = tools.runner("echo")
    assert isinstance(first, Invoker)
    assert tools.runner("echo") is first
    assert tools.runner("missing") is None
    plane.sdk.remove_tool("echo")

    @plane.tool(name="echo")
    async def louder(text: str) -> str:  # pyright: ignore[reportUnusedFunction]
        return text.upper()

    second = tools.runner("echo")
    assert isinstance(second, Invoker)
    assert second is not first
    result = await second({"text": "hi"}, plane.make_context(None, None))
    assert isinstance(result, CallToolResult)
    assert result.content == [TextContent(type="text", text="HI")]


async def test_the_plane_runs_local_tools_through_their_invokers() -> None:
    plane = make_plane()
    tool = local_tool(plane.sdk, "echo")
    assert tool is not None
    calls: list[dict[str, Any]] = []
    original = Invoker.__call__

    async def spy(self: Invoker, arguments: dict[str, Any], context: Any) -> Any:
        calls.append(arguments)
        return await original(self, arguments, context)

    Invoker.__call__ = spy  # type: ignore[method-assign]
    try:
        async with plane.lifespan():
            from mcplane.pipeline import Call

            context = plane.make_context(None, None)
            result = await plane.dispatch(Call("tool", "echo", {"text": "x"}, context))
    finally:
        Invoker.__call__ = original  # type: ignore[method-assign]
    assert calls == [{"text": "x"}]
    assert isinstance(result, CallToolResult)
    assert result.structured_content == {"result": "x"}


async def test_a_plain_text_result_is_wrapped_without_the_output_validator(monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``str`` returned for a plain ``-> str`` is ``{"result": text}`` without validating it again (what the
    SDK's validation and dump give back, see the cases above); a constrained return still goes through it."""
    plane = make_plane()
    context = plane.make_context(None, None)
    used: list[str] = []
    real = Invoker._output_adapter  # pyright: ignore[reportPrivateUsage]

    def watched(self: Invoker, metadata: Any, output_model: Any) -> Any:
        used.append(self.tool.name)
        return real(self, metadata, output_model)

    monkeypatch.setattr(Invoker, "_output_adapter", watched)
    for name, text in (("echo", "hi"), ("short", "abc"), ("subclassed", "s")):
        tool = local_tool(plane.sdk, name)
        assert tool is not None
        invoker = invoker_for(plane.sdk, tool)
        assert invoker is not None
        result = await invoker({"text": text}, context)
        assert isinstance(result, CallToolResult)
        assert result.structured_content == {"result": text}
    assert used == ["short", "subclassed"]


def test_only_the_sdks_plain_text_wrapper_is_taken_as_one() -> None:
    from pydantic import ConfigDict, create_model, field_validator

    from mcplane.sdk_adapter.tools import _plain_text_wrapper  # pyright: ignore[reportPrivateUsage]

    plane = make_plane()
    outputs = {name: local_tool(plane.sdk, name) for name in ("echo", "short", "aliased", "structured", "point")}
    taken = {
        name: tool is not None and _plain_text_wrapper(tool.fn_metadata.output_model) for name, tool in outputs.items()
    }
    assert taken == {"echo": True, "short": False, "aliased": True, "structured": False, "point": False}

    class Stripped(BaseModel):
        model_config = ConfigDict(str_strip_whitespace=True)
        result: str

    class Checked(BaseModel):
        result: str

        @field_validator("result")
        @classmethod
        def upper(cls, value: str) -> str:
            return value.upper()

    aliased = create_model("Aliased", result=(str, Field(alias="r")))
    two = create_model("Two", result=(str, ...), other=(int, 0))
    assert not any(_plain_text_wrapper(model) for model in (Stripped, Checked, aliased, two, str, None))
