"""Typed errors: an error result or JSON-RPC error raises the mcplane.errors class of its code."""

from __future__ import annotations

import re
import uuid

import pytest
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, TextContent

from mcplane import DependencyUnavailable, Forbidden, InvalidArguments, MCPlaneError, NotFound, RateLimited
from mcplane.client import Client, ToolFailed
from mcplane.client._errors import from_mcp_error, from_result
from tests.conftest import ServerProcess, error_of

CORRELATION_ID = re.compile(r"^[0-9a-f]{16}$")


async def test_an_error_result_raises_its_class(endpoint: str) -> None:
    async with Client(endpoint) as client:
        with pytest.raises(Forbidden) as caught:
            await client.call_tool("flaky_write", {"key": uuid.uuid4().hex, "failures": 1, "code": "forbidden"})
    error = caught.value
    assert (error.code, error.message, error.retryable) == ("forbidden", "transient failure 1 of 1", False)
    assert CORRELATION_ID.match(error.correlation_id)  # type: ignore[attr-defined]


async def test_retryable_errors_carry_retry_after(client_server: ServerProcess) -> None:
    arguments = {"key": uuid.uuid4().hex, "failures": 1, "code": "rate_limited", "retry_after_ms": 250}
    async with Client(client_server.url, retry=None) as client:
        with pytest.raises(RateLimited) as caught:
            await client.call_tool("flaky_write", arguments)
    assert caught.value.retryable is True
    assert caught.value.retry_after_ms == 250


async def test_invalid_arguments_carry_details(client_server: ServerProcess) -> None:
    async with Client(client_server.url) as client:
        with pytest.raises(InvalidArguments) as caught:
            await client.call_tool("echo", {"key": "k"})
    assert isinstance(caught.value.details, list)
    assert caught.value.details[0]["field"] == "text"


async def test_a_protocol_error_with_an_error_object_raises_its_class(client_server: ServerProcess) -> None:
    async with Client(client_server.url) as client:
        with pytest.raises(NotFound) as caught:
            await client.call_tool("no_such_tool")
    assert caught.value.message == "Unknown tool: no_such_tool"
    assert isinstance(caught.value.__cause__, MCPError)


async def test_an_error_without_an_error_object_raises_tool_failed(client_server: ServerProcess) -> None:
    async with Client(client_server.url) as client:
        with pytest.raises(ToolFailed) as caught:
            await client.call_tool("plain_error")
    assert caught.value.message == "the printer is on fire"
    assert caught.value.result is not None
    assert caught.value.result.is_error
    assert isinstance(caught.value, MCPlaneError)


async def test_raise_on_error_false_returns_the_result(client_server: ServerProcess) -> None:
    arguments = {"key": uuid.uuid4().hex, "failures": 5}
    async with Client(client_server.url, raise_on_error=False, retry=None) as client:
        result = await client.call_tool("flaky_write", arguments)
        assert result.is_error
        assert error_of(result)["code"] == "dependency_unavailable"
        with pytest.raises(DependencyUnavailable):  # per call, the other way round
            await client.call_tool("flaky_write", arguments, raise_on_error=True)


async def test_raise_on_error_false_returns_the_last_result_after_retries(client_server: ServerProcess) -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async with Client(client_server.url, sleep=sleep) as client:
        result = await client.call_tool("flaky_read", {"key": uuid.uuid4().hex, "failures": 9}, raise_on_error=False)
    assert result.is_error
    assert len(waits) == 2
    assert error_of(result)["message"] == "transient failure 3 of 9"


@pytest.mark.parametrize("where", ["meta", "structured"])
def test_an_unknown_code_raises_tool_failed_keeping_it(where: str) -> None:
    """Read from ``_meta``, and from ``structuredContent.error`` where older mcplane servers put it."""
    body = {"code": "quota_melted", "message": "new code", "retryable": True, "correlation_id": "c1"}
    result = CallToolResult(
        content=[TextContent(type="text", text="x")],
        is_error=True,
        **({"_meta": {"mcplane/error": body}} if where == "meta" else {"structured_content": {"error": body}}),
    )
    error = from_result(result)
    assert isinstance(error, ToolFailed)
    assert (error.remote_code, error.message, error.retryable) == ("quota_melted", "new code", True)
    assert error.correlation_id == "c1"  # type: ignore[attr-defined]


def test_the_wire_decides_retryable_and_bad_fields_are_dropped() -> None:
    body = {"code": "rate_limited", "message": "", "retryable": False, "retry_after_ms": -5, "correlation_id": 3}
    error = from_mcp_error(MCPError(-32000, "slow down", body))
    assert isinstance(error, RateLimited)
    assert (error.message, error.retryable, error.retry_after_ms) == ("slow down", False, None)
    assert error.correlation_id is None  # type: ignore[attr-defined]
    assert RateLimited.retryable is True  # only that instance changed
    assert from_mcp_error(MCPError(-32000, "no object", {"reason": "x"})) is None
