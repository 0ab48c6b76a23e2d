"""Result shaping: the hot path writes a tool's result exactly as the SDK's runner writes it.

Typed and untyped returns, structured content and output schemas, tool errors, unicode, large
integers and a result's own ``_meta``, in each transport and era.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from mcp_types import CallToolResult, TextContent
from mcp_types import methods as _methods
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel

from mcplane import Plane
from mcplane.errors import NotFound
from mcplane.sdk_adapter.results import plain_sieve
from tests.sdk_compat.wire import ERAS, Era, answers_of, tool_call


class Point(BaseModel):
    x: int
    y: int
    label: str = "p"


def make_plane() -> Plane:
    plane = Plane("compat", version="9.9.9")

    @plane.tool()
    async def text(value: str) -> str:
        return value

    @plane.tool()
    def number(value: int) -> int:
        return value

    @plane.tool()
    async def real(value: float) -> float:
        return value

    @plane.tool()
    async def point(x: int) -> Point:
        return Point(x=x, y=-x, label="ünïcödé ☃")

    @plane.tool()
    async def mapping(keys: list[str]) -> dict[str, int]:
        return {key: len(key) for key in keys}

    @plane.tool()
    async def listing(n: int) -> list[int]:
        return list(range(n))

    @plane.tool()
    async def nothing() -> None:
        return None

    @plane.tool()
    async def untyped(value):  # type: ignore[no-untyped-def]
        return {"got": value}

    @plane.tool(structured_output=False)
    async def unstructured(value: str) -> str:
        return value

    @plane.tool()
    async def with_meta(stamp: bool) -> CallToolResult:
        meta: dict[str, Any] = {"mine": {"a": 1}}
        if stamp:
            meta["io.modelcontextprotocol/serverInfo"] = {"name": "the-tool-says", "version": "0"}
        return CallToolResult(content=[TextContent(type="text", text="m")], _meta=meta)

    @plane.tool()
    async def failing() -> str:
        raise RuntimeError("secret-token-123")

    @plane.tool()
    async def missing() -> str:
        raise NotFound("no such row")

    @plane.tool()
    async def error_result() -> CallToolResult:
        return CallToolResult(content=[TextContent(type="text", text="nope")], is_error=True)

    return plane


CASES: list[tuple[str, Any]] = [
    ("text", {"value": 'hé ☃ 𝄞 \u2028 \\ " \u0001'}),
    ("text", {"value": ""}),
    ("number", {"value": 2**53 + 1}),
    ("number", {"value": -(2**63)}),
    ("number", {"value": 2**63 - 1}),
    ("real", {"value": 0.1}),
    ("real", {"value": 1e308}),
    ("point", {"x": 7}),
    ("mapping", {"keys": ["a", "ünï", "☃☃"]}),
    ("listing", {"n": 3}),
    ("nothing", {}),
    ("untyped", {"value": [1, {"k": None}]}),
    ("unstructured", {"value": "plain"}),
    ("with_meta", {"stamp": False}),
    ("with_meta", {"stamp": True}),
    ("failing", {}),
    ("missing", {}),
    ("error_result", {}),
    ("number", {"value": "not a number"}),
    ("number", {}),
    ("text", None),
]


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize(("name", "arguments"), CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
async def test_results_are_shaped_as_the_sdk_shapes_them(era: Era, name: str, arguments: Any) -> None:
    compared = await answers_of(make_plane, era, [tool_call(name, arguments, request_id=f"r-{name}")])
    assert compared.fast == compared.sdk
    assert compared.served == 1  # the hot path answered it: the comparison is not SDK against SDK
    (answer,) = compared.fast
    assert "secret-token-123" not in str(answer.body)
    assert "result" in answer.body


def make_huge_plane() -> Plane:
    plane = Plane("huge")

    @plane.tool()
    def number(value: int) -> int:
        return value

    @plane.tool()
    def huge() -> int:
        return 2**70

    return plane


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize(
    "call",
    [tool_call("number", {"value": 2**64 + 5}), tool_call("number", {"value": -(2**64)}), tool_call("huge", {})],
    ids=["argument-over-64-bits", "negative-over-64-bits", "result-over-64-bits"],
)
async def test_integers_beyond_64_bits_are_read_and_written_as_the_sdk_does(era: Era, call: dict[str, Any]) -> None:
    """``orjson`` reads such an integer as a float where the SDK's parser keeps it: the hot path
    leaves an HTTP body holding one to the SDK (streams read every line with ``orjson`` either way)."""
    compared = await answers_of(make_huge_plane, era, [call])
    assert compared.fast == compared.sdk
    if call["params"]["name"] == "huge":  # answered, not an internal_error (orjson refuses such integers)
        assert compared.fast[0].body["result"]["structuredContent"] == {"result": 2**70}


@pytest.mark.parametrize("era", ERAS)
async def test_a_result_beyond_64_bits_from_a_call_the_hot_path_takes_is_written_as_the_sdk_writes_it(
    era: Era,
) -> None:
    """``2**63 + 2**63``: no argument past 64 bits (the hot path takes the call), a result past them."""

    def make() -> Plane:
        plane = Plane("sum")

        @plane.tool()
        def add(a: int, b: int) -> int:
            return a + b

        return plane

    compared = await answers_of(make, era, [tool_call("add", {"a": 2**63, "b": 2**63})])
    assert compared.fast == compared.sdk
    assert compared.fast[0].body["result"]["structuredContent"] == {"result": 2**64}


PLAIN_SHAPES: dict[str, dict[str, Any]] = {
    "text": {"content": [{"type": "text", "text": "hi"}], "isError": False, "resultType": "complete"},
    "structured": {
        "content": [{"type": "text", "text": '{"result": 1}'}],
        "structuredContent": {"result": 1, "nested": {"k": [1, "ü", None]}},
        "isError": False,
        "resultType": "complete",
    },
    "error": {"content": [{"type": "text", "text": "boom"}], "isError": True, "resultType": "complete"},
    "several blocks, unicode": {
        "content": [{"type": "text", "text": "☃"}, {"type": "text", "text": ""}],
        "isError": False,
        "resultType": "complete",
    },
    "no content": {"content": [], "isError": False, "resultType": "complete"},
    "no isError": {"content": [{"type": "text", "text": "x"}], "resultType": "complete"},
}
NOT_PLAIN: dict[str, dict[str, Any]] = {
    "meta": {"content": [{"type": "text", "text": "x"}], "_meta": {"k": 1}, "resultType": "complete"},
    "image": {"content": [{"type": "image", "data": "AA==", "mimeType": "image/png"}], "resultType": "complete"},
    "annotated text": {
        "content": [{"type": "text", "text": "x", "annotations": {"priority": 0.5}}],
        "resultType": "complete",
    },
    "extra key": {"content": [], "resultType": "complete", "vendor": 1},
    "input required": {"resultType": "input_required", "inputRequests": {}},
    "structured list": {"content": [], "structuredContent": [1, 2], "resultType": "complete"},
    "isError not a bool": {"content": [], "isError": "yes", "resultType": "complete"},
    "text not a string": {"content": [{"type": "text", "text": 5}], "resultType": "complete"},
}
VERSIONS = [*sorted(MODERN_PROTOCOL_VERSIONS), *sorted(HANDSHAKE_PROTOCOL_VERSIONS)]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("shape", list(PLAIN_SHAPES))
def test_the_plain_sieve_is_the_sdk_sieve_on_plain_results(version: str, shape: str) -> None:
    dumped = PLAIN_SHAPES[shape]
    expected = _methods.serialize_server_result("tools/call", version, copy.deepcopy(dumped))
    assert plain_sieve(copy.deepcopy(dumped), version) == expected


@pytest.mark.parametrize("shape", list(NOT_PLAIN))
def test_the_plain_sieve_leaves_everything_else_to_the_sdk(shape: str) -> None:
    for version in VERSIONS:
        assert plain_sieve(copy.deepcopy(NOT_PLAIN[shape]), version) is None


def test_the_plain_sieve_leaves_unknown_versions_to_the_sdk() -> None:
    assert plain_sieve(copy.deepcopy(PLAIN_SHAPES["text"]), "1999-01-01") is None
