"""Error mapping: a failure reaches the wire the same way on both paths — a JSON-RPC error (and, on
2026-07-28 HTTP, the status the SDK gives its code) or a tool result with ``isError``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from mcp.shared.exceptions import MCPError
from mcp_types import ErrorData, TextContent

from mcplane import Plane
from mcplane.errors import Forbidden, RateLimited
from mcplane.pipeline import Call, CallNext
from tests.sdk_compat.wire import ERAS, Era, answers_of, tool_call


@dataclass(frozen=True)
class Returns:
    """The guard answers this instead of calling the tool."""

    value: Any


FAILURES: dict[str, Any] = {
    "invalid-params": MCPError(-32602, "bad arguments ✗", {"field": "x", "n": 2**40}),
    "server-defined": MCPError(-32050, "custom", None),
    "internal": MCPError(-32603, "internal", {"nested": {"list": [1, None, "ü"]}}),
    "header-mismatch": MCPError(-32020, "Mcp-Param header mismatch"),
    "rate-limited": RateLimited("slow down", retry_after_ms=1500),
    "forbidden": Forbidden("not yours"),
    "crash": RuntimeError("secret-token-123"),
    "not-a-result": Returns("a string where a CallToolResult belongs"),
    "none": Returns(None),
    "a-valid-mapping": Returns({"content": [{"type": "text", "text": "from a dict"}], "isError": False}),
    "an-invalid-mapping": Returns({"content": 5}),
    "error-data": Returns(ErrorData(code=-32602, message="as data", data={"k": "v"})),
    "another-model": Returns(TextContent(type="text", text="not a result")),
}


def failing_plane(case: str) -> Plane:
    plane = Plane("errors")

    @plane.tool()
    async def echo(text: str) -> str:
        return text

    @plane.tool()
    async def raises_mcp_error() -> str:
        raise MCPError(-32602, "the tool says no", {"why": "because"})

    async def guard(call: Call, call_next: CallNext) -> Any:
        failure = FAILURES.get(case)
        if isinstance(failure, BaseException):
            raise failure
        if isinstance(failure, Returns):
            return failure.value
        return await call_next(call)

    plane.pipeline.set("guard", guard)
    return plane


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize("case", list(FAILURES))
async def test_pipeline_failures_are_mapped_as_the_sdk_maps_them(era: Era, case: str) -> None:
    compared = await answers_of(lambda: failing_plane(case), era, [tool_call("echo", {"text": "x"})])
    assert compared.fast == compared.sdk
    assert compared.served == 1
    assert "secret-token-123" not in str(compared.fast[0].body)


@pytest.mark.parametrize("era", ERAS)
async def test_a_tools_own_protocol_error_is_mapped_as_the_sdk_maps_it(era: Era) -> None:
    compared = await answers_of(lambda: failing_plane("none"), era, [tool_call("raises_mcp_error", {})])
    assert compared.fast == compared.sdk
    assert compared.served == 1
