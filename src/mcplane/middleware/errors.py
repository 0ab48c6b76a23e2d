"""The outermost slot: every failure leaves as a stable error code, never as exception text.

A tool failure becomes a tool result with ``isError: true`` and the error object in its
``_meta["mcplane/error"]`` and, as JSON, in its text content (never in ``structuredContent``,
which a tool's ``outputSchema`` governs); a protocol failure (an unknown tool, resource or prompt, or any failure
of a resource read or prompt get) becomes a JSON-RPC error with the error object in ``data``.
The exception itself is logged on the server with the correlation id the client sees.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, TextContent
from pydantic import ValidationError

from mcplane.errors import ERROR_META_KEY, InternalError, InvalidArguments, MCPlaneError
from mcplane.middleware.validate import MAX_DETAILS, pydantic_details
from mcplane.pipeline import Call, CallNext

__all__ = ["ErrorsMiddleware", "error_result", "to_mcplane_error"]

logger = logging.getLogger("mcplane.errors")


def _validation_details(exc: ValidationError) -> list[dict[str, Any]]:
    return pydantic_details(exc, MAX_DETAILS)


def _rejected_arguments(exc: BaseException) -> bool:
    """The SDK's argument check failed: a deliberate ``ToolError`` caused directly by a ``ValidationError``.

    A ``ValidationError`` deeper in a crash (a tool validating its own data) is the tool's bug,
    not the caller's, and its text must not reach the client.
    """
    return (
        isinstance(exc, ToolError)
        and not isinstance(exc, UnexpectedToolError)
        and isinstance(exc.__cause__, ValidationError)
    )


def to_mcplane_error(exc: Exception) -> MCPlaneError | None:
    """Find the mcplane error an exception means, looking through the SDK's wrappers.

    Returns ``None`` for an unexpected crash (the caller logs it and answers ``internal_error``).
    """
    if isinstance(exc, ValidationError):
        return InvalidArguments("the arguments do not match the input schema", details=_validation_details(exc))
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, MCPlaneError):
            return current
        if _rejected_arguments(current):
            assert isinstance(current.__cause__, ValidationError)
            details = _validation_details(current.__cause__)
            return InvalidArguments("the arguments do not match the tool's input schema", details=details)
        current = current.__cause__
    if isinstance(exc, ToolError) and not isinstance(exc, UnexpectedToolError):
        # A deliberate ToolError without a structured cause: its text was chosen by the tool author.
        text = str(exc)
        prefix = "Error executing tool "
        if text.startswith(prefix) and ": " in text:
            text = text.split(": ", 1)[1]
        return InvalidArguments(text)
    return None


def error_result(error: MCPlaneError, correlation_id: str) -> CallToolResult:
    body = error.to_dict(correlation_id)
    return CallToolResult(
        content=[TextContent(type="text", text=orjson.dumps({"error": body}).decode())],
        is_error=True,
        _meta={ERROR_META_KEY: body},
    )


def protocol_error(error: MCPlaneError, correlation_id: str) -> MCPError:
    return MCPError(code=error.jsonrpc_code, message=error.message, data=error.to_dict(correlation_id))


class ErrorsMiddleware:
    """Maps every exception to a stable code; logs the crash with its correlation id."""

    async def __call__(self, call: Call, call_next: CallNext) -> Any:
        try:
            return await call_next(call)
        except MCPError:
            raise
        except Exception as exc:
            cid = call.context.correlation_id
            error = to_mcplane_error(exc)
            if error is None:
                logger.error(
                    "%s %r crashed (correlation_id=%s)", call.kind, call.name, cid, exc_info=exc.__cause__ or exc
                )
                error = InternalError()
            if call.kind == "tool":
                return error_result(error, cid)
            raise protocol_error(error, cid) from None
