"""The errors slot: every failure leaves as a stable code; exception text never does."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult
from pydantic import BaseModel, ValidationError, field_validator

from mcplane.context import Context
from mcplane.errors import InternalError, InvalidArguments, NotFound, RateLimited, Timeout
from mcplane.middleware.errors import ErrorsMiddleware, error_result, to_mcplane_error
from mcplane.pipeline import Call, CallKind
from tests.conftest import error_of

SECRET = "s3cr3t-token"


class Row(BaseModel):
    token: str

    @field_validator("token")
    @classmethod
    def reject(cls, value: str) -> str:
        raise ValueError(f"token {value} is revoked")


sdk = MCPServer("errors-test")


@sdk.tool()
def add(a: int, b: int) -> int:
    return a + b


@sdk.tool()
def validates_its_own_data() -> str:
    Row(token=SECRET)  # a bug in the tool, not in the caller's arguments
    return "unreachable"


@sdk.tool()
def crashes() -> str:
    raise RuntimeError(f"password={SECRET}")


@sdk.tool()
def not_found() -> str:
    raise NotFound("no such invoice")


async def _sdk_exception(tool: str, arguments: dict[str, Any]) -> Exception:
    """The exception the official SDK raises for this call, wrappers and all."""
    with pytest.raises(ToolError, match=f"^Error executing tool {tool}") as caught:
        await sdk.call_tool(tool, arguments)
    return caught.value


def _call(kind: CallKind = "tool", correlation_id: str = "cid-1") -> Call:
    return Call(kind, "subject", {}, Context(correlation_id=correlation_id))


async def _through_errors(exc: BaseException, kind: CallKind = "tool") -> Any:
    async def failing(call: Call) -> Any:
        raise exc

    return await ErrorsMiddleware()(_call(kind), failing)


def _error_of(result: Any) -> dict[str, Any]:
    assert isinstance(result, CallToolResult)
    assert result.is_error is True
    return error_of(result)


async def test_arguments_rejected_by_the_sdk_are_invalid_arguments_with_fields() -> None:
    error = to_mcplane_error(await _sdk_exception("add", {"a": "one"}))
    assert isinstance(error, InvalidArguments)
    assert error.details == [
        {
            "field": "a",
            "message": "Input should be a valid integer, unable to parse string as an integer",
            "type": "int_parsing",
        },
        {"field": "b", "message": "Field required", "type": "missing"},
    ]


async def test_a_validation_error_inside_a_crash_is_internal_not_invalid_arguments() -> None:
    exc = await _sdk_exception("validates_its_own_data", {})
    assert to_mcplane_error(exc) is None
    result = await _through_errors(exc)
    error = _error_of(result)
    assert error["code"] == "internal_error"
    assert SECRET not in result.model_dump_json()
    assert "revoked" not in result.model_dump_json()


async def test_an_mcplane_error_raised_by_a_tool_is_found_through_the_sdk_wrapper() -> None:
    error = to_mcplane_error(await _sdk_exception("not_found", {}))
    assert isinstance(error, NotFound)
    assert error.message == "no such invoice"


async def test_a_crash_maps_to_nothing_and_answers_internal_error(caplog: pytest.LogCaptureFixture) -> None:
    exc = await _sdk_exception("crashes", {})
    assert to_mcplane_error(exc) is None
    with caplog.at_level(logging.ERROR, logger="mcplane.errors"):
        result = await _through_errors(exc)
    error = _error_of(result)
    assert error == {
        "code": "internal_error",
        "message": "internal error",
        "retryable": False,
        "correlation_id": "cid-1",
    }
    assert SECRET not in result.model_dump_json()
    # The server log keeps the whole story, tied to the id the client saw.
    assert "cid-1" in caplog.text
    assert SECRET in caplog.text


async def test_a_deliberate_tool_error_keeps_its_authors_text() -> None:
    error = to_mcplane_error(ToolError("Error executing tool refund: amount exceeds the charge"))
    assert isinstance(error, InvalidArguments)
    assert error.message == "amount exceeds the charge"


def test_a_bare_validation_error_is_invalid_arguments() -> None:
    with pytest.raises(ValidationError) as caught:
        Row.model_validate({})
    error = to_mcplane_error(caught.value)
    assert isinstance(error, InvalidArguments)
    assert error.details == [{"field": "token", "message": "Field required", "type": "missing"}]


def test_cause_cycles_do_not_hang() -> None:
    first, second = RuntimeError("a"), RuntimeError("b")
    first.__cause__, second.__cause__ = second, first
    assert to_mcplane_error(first) is None


async def test_tool_failures_become_error_results_with_the_code() -> None:
    error = _error_of(await _through_errors(RateLimited(retry_after_ms=250)))
    assert error == {
        "code": "rate_limited",
        "message": "rate limit exceeded",
        "retryable": True,
        "retry_after_ms": 250,
        "correlation_id": "cid-1",
    }


@pytest.mark.parametrize("kind", ["resource", "prompt"])
async def test_other_failures_become_jsonrpc_errors(kind: CallKind) -> None:
    with pytest.raises(MCPError) as caught:
        await _through_errors(Timeout(), kind)
    assert caught.value.error.code == -32000
    assert caught.value.error.message == "the call timed out"
    assert caught.value.error.data == {
        "code": "timeout",
        "message": "the call timed out",
        "retryable": True,
        "correlation_id": "cid-1",
    }


@pytest.mark.parametrize("kind", ["resource", "prompt"])
async def test_crashes_outside_tools_are_internal_jsonrpc_errors(kind: CallKind) -> None:
    with pytest.raises(MCPError) as caught:
        await _through_errors(KeyError(SECRET), kind)
    assert caught.value.error.code == -32603
    assert SECRET not in str(caught.value.error)


async def test_protocol_errors_pass_through_untouched() -> None:
    original = MCPError(code=-32602, message="Unknown tool: x", data={"code": "not_found"})
    with pytest.raises(MCPError) as caught:
        await _through_errors(original)
    assert caught.value is original


async def test_success_passes_through() -> None:
    async def ok(call: Call) -> str:
        return "fine"

    assert await ErrorsMiddleware()(_call(), ok) == "fine"


async def test_cancellation_is_not_swallowed() -> None:
    import anyio

    with pytest.raises(anyio.get_cancelled_exc_class()):
        await _through_errors(anyio.get_cancelled_exc_class()())


def test_error_result_carries_the_object_in_meta_and_text_and_no_structured_content() -> None:
    result = error_result(InternalError(), "abc")
    assert result.is_error is True
    assert result.structured_content is None  # an outputSchema governs structuredContent, not errors
    assert result.meta == {
        "mcplane/error": {
            "code": "internal_error",
            "message": "internal error",
            "retryable": False,
            "correlation_id": "abc",
        }
    }
    assert result.content[0].type == "text"
    assert result.content[0].text == (
        '{"error":{"code":"internal_error","message":"internal error","retryable":false,"correlation_id":"abc"}}'
    )
