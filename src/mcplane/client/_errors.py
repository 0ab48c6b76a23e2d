"""What a server's failure means on this side: an exception of :mod:`mcplane.errors`.

A tool failure arrives as a result with ``isError: true``; a protocol failure as a JSON-RPC error.
Either may carry mcplane's error object ``{code, message, retryable, retry_after_ms?,
correlation_id, details?}`` (in ``_meta["mcplane/error"]`` or in the error's ``data``). Such an
error is raised as the class with that code (``rate_limited`` → :class:`~mcplane.RateLimited`),
carrying the message, ``retry_after_ms``, ``details`` and, as attributes set on the instance,
``correlation_id`` and the ``retryable`` the server said. An ``isError`` result without a known
error object raises :class:`ToolFailed`, which keeps the raw result.
"""

from __future__ import annotations

import ssl
from typing import Any, cast

import anyio
import httpx2
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED, CallToolResult, TextContent

from mcplane.errors import WIRE_ERRORS, DependencyUnavailable, MCPlaneError, error_object_of

__all__ = ["ToolFailed", "from_mcp_error", "from_result", "is_transport_error", "stamp", "tls_failure", "unwrap"]


class ToolFailed(MCPlaneError):
    """A tool answered ``isError: true`` without an error object this client knows.

    ``result`` is the raw ``CallToolResult``; ``remote_code`` the code string it carried, if any
    (a code newer than this client). The message is the server's (its first text content).
    """

    code = "tool_failed"
    default_message = "the tool failed"

    def __init__(
        self,
        message: str | None = None,
        *,
        result: CallToolResult | None = None,
        remote_code: str | None = None,
        retry_after_ms: int | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(message, retry_after_ms=retry_after_ms, details=details)
        self.result = result
        self.remote_code = remote_code


def stamp(error: MCPlaneError, *, correlation_id: str | None, retryable: bool | None = None) -> MCPlaneError:
    """Set what the wire said and the class cannot know: the correlation id, a different ``retryable``."""
    error.correlation_id = correlation_id
    if retryable is not None and retryable != error.retryable:
        setattr(error, "retryable", retryable)  # noqa: B010 - shadows the class default for this instance
    return error


def _error_object(value: Any) -> dict[str, Any] | None:
    if isinstance(value, dict) and isinstance(cast("dict[str, Any]", value).get("code"), str):
        return cast("dict[str, Any]", value)
    return None


def _from_object(body: dict[str, Any], fallback: str, result: CallToolResult | None) -> MCPlaneError:
    code: str = body["code"]
    message = body.get("message")
    message = message if isinstance(message, str) and message else fallback
    retry_after = body.get("retry_after_ms")
    retry_after_ms = retry_after if isinstance(retry_after, int) and not isinstance(retry_after, bool) else None
    if retry_after_ms is not None and retry_after_ms < 0:
        retry_after_ms = None
    details = body.get("details")
    cls = WIRE_ERRORS.get(code)
    if cls is None:
        error: MCPlaneError = ToolFailed(
            message, result=result, remote_code=code, retry_after_ms=retry_after_ms, details=details
        )
    else:
        error = cls(message, retry_after_ms=retry_after_ms, details=details)
    correlation_id = body.get("correlation_id")
    retryable = body.get("retryable")
    return stamp(
        error,
        correlation_id=correlation_id if isinstance(correlation_id, str) else None,
        retryable=retryable if isinstance(retryable, bool) else None,
    )


def from_result(result: CallToolResult) -> MCPlaneError:
    """The exception an ``isError`` tool result means."""
    text = next((block.text for block in result.content if isinstance(block, TextContent)), None)
    body = _error_object(error_object_of(result))
    if body is not None:
        return _from_object(body, text or "the tool failed", result)
    return stamp(ToolFailed(text, result=result), correlation_id=None)


def from_mcp_error(exc: MCPError) -> MCPlaneError | None:
    """The exception a JSON-RPC error means, or ``None`` when it carries no mcplane error object."""
    body = _error_object(exc.data)
    if body is None:
        return None
    return _from_object(body, exc.message, None)


def unwrap(exc: BaseException) -> BaseException:
    """The one failure inside (nested) single-member exception groups, as task groups wrap it."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def is_transport_error(exc: BaseException) -> bool:
    """The request may not have reached the server, or its answer was lost on the way back."""
    exc = unwrap(exc)
    if isinstance(exc, MCPError):
        return exc.code == CONNECTION_CLOSED and _error_object(exc.data) is None
    return isinstance(
        exc, httpx2.TransportError | ConnectionError | anyio.BrokenResourceError | anyio.ClosedResourceError
    )


def _ssl_error(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error behind ``exc`` (through causes, contexts and exception groups), if any."""
    pending: list[BaseException] = [exc]
    seen: set[int] = set()
    while pending:
        current = pending.pop(0)  # breadth first: a cause before what it was raised while handling
        if id(current) in seen:
            continue
        seen.add(id(current))
        # "want read/write" is the non-blocking TLS machinery at work, left behind as a context.
        if isinstance(current, ssl.SSLError) and not isinstance(current, _NOT_FAILURES):
            return current
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)  # pyright: ignore[reportUnknownMemberType, reportUnknownArgumentType]
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return None


_NOT_FAILURES = (ssl.SSLWantReadError, ssl.SSLWantWriteError)


def tls_failure(exc: BaseException) -> DependencyUnavailable | None:
    """A connection that failed on TLS, as a typed, non-retryable error; ``None`` for anything else."""
    found = _ssl_error(exc)
    if found is None:
        return None
    if isinstance(found, ssl.SSLCertVerificationError):
        reason = "tls_untrusted_server"
        message = f"TLS: the server's certificate was not accepted ({found.verify_message or 'verify failed'})"
    else:
        reason = "tls_handshake_failed"
        why = (found.reason or "").lower().replace("_", " ") or str(found)
        message = f"TLS: the handshake failed ({why})"
    error = DependencyUnavailable(message, details={"reason": reason})
    error.__cause__ = found
    return cast("DependencyUnavailable", stamp(error, correlation_id=None, retryable=False))
