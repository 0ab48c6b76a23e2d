"""The one exception tree of mcplane.

Every failure a client can see has a stable code string that an agent can act on::

    MCPlaneError                      (base; code "internal_error")
    ├── ConfigError                   bad configuration or a bad CLI target; never reaches a client
    ├── InvalidArguments              invalid_arguments        (tool error, not retryable)
    ├── Unauthenticated               unauthenticated
    ├── Forbidden                     forbidden
    ├── NotFound                      not_found
    ├── RateLimited                   rate_limited             (retryable, retry_after_ms)
    ├── BudgetExceeded                budget_exceeded
    ├── Timeout                       timeout                  (retryable)
    ├── DeadlineExceeded              deadline_exceeded
    ├── DependencyUnavailable         dependency_unavailable   (retryable)
    ├── CircuitOpen                   circuit_open             (retryable, retry_after_ms)
    ├── UpstreamError                 upstream_error
    ├── ToolQuarantined               tool_quarantined         (a gateway tool withheld until approved)
    ├── InvalidRequest                invalid_request          (a message that is not valid JSON-RPC)
    ├── PayloadTooLarge               payload_too_large        (a body or frame over the size cap)
    └── InternalError                 internal_error

The error object is ``{"code", "message", "retryable", "retry_after_ms"?, "correlation_id", "details"?}``.
A tool failure becomes a tool result with ``isError: true`` that carries it twice and nowhere else:
in the result's ``_meta["mcplane/error"]`` (for programs) and as ``{"error": {...}}`` JSON in its
one text content block (for models and for clients that show only content). It has no
``structuredContent``: a tool with an ``outputSchema`` would otherwise answer something that
breaks its own schema, which strict clients (the TypeScript SDK) refuse to read.
A protocol failure becomes a JSON-RPC error whose ``data`` holds the same object.
The message is always the class's fixed, safe text or the text the raiser chose; exception text
from arbitrary code never reaches a client.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "ERROR_META_KEY",
    "BudgetExceeded",
    "CircuitOpen",
    "ConfigError",
    "DeadlineExceeded",
    "DependencyUnavailable",
    "Forbidden",
    "InternalError",
    "InvalidArguments",
    "InvalidRequest",
    "MCPlaneError",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "Timeout",
    "ToolQuarantined",
    "Unauthenticated",
    "UpstreamError",
    "error_object_of",
]

ERROR_META_KEY = "mcplane/error"
"""``_meta`` key of an ``isError`` tool result that holds its error object."""

# JSON-RPC codes used when an error travels as a protocol error rather than a tool result.
_INVALID_REQUEST = -32600
_INVALID_PARAMS = -32602
_INTERNAL_ERROR = -32603
_SERVER_ERROR = -32000


class MCPlaneError(Exception):
    """Base of every mcplane error. Catch this to catch them all."""

    code: ClassVar[str] = "internal_error"
    jsonrpc_code: ClassVar[int] = _INTERNAL_ERROR
    retryable: ClassVar[bool] = False
    default_message: ClassVar[str] = "internal error"

    def __init__(
        self,
        message: str | None = None,
        *,
        retry_after_ms: int | None = None,
        details: Any = None,
    ) -> None:
        self.message = message or self.default_message
        self.retry_after_ms = retry_after_ms
        self.details = details
        self.correlation_id: str | None = None
        """Set on errors a client received: the id the server logged the failure under."""
        super().__init__(self.message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"

    def to_dict(self, correlation_id: str | None = None) -> dict[str, Any]:
        """The wire form: what goes into ``_meta["mcplane/error"]`` of a tool result or JSON-RPC ``error.data``."""
        body: dict[str, Any] = {"code": self.code, "message": self.message, "retryable": self.retryable}
        if self.retry_after_ms is not None:
            body["retry_after_ms"] = self.retry_after_ms
        if correlation_id is not None:
            body["correlation_id"] = correlation_id
        if self.details is not None:
            body["details"] = self.details
        return body


class ConfigError(MCPlaneError):
    """Configuration, target or command-line input is wrong. Reported to the operator, not to a client."""

    code = "config_error"
    default_message = "invalid configuration"


class InvalidArguments(MCPlaneError):
    code = "invalid_arguments"
    jsonrpc_code = _INVALID_PARAMS
    default_message = "invalid arguments"


class Unauthenticated(MCPlaneError):
    code = "unauthenticated"
    jsonrpc_code = _SERVER_ERROR
    default_message = "authentication required"


class Forbidden(MCPlaneError):
    code = "forbidden"
    jsonrpc_code = _SERVER_ERROR
    default_message = "not allowed"


class NotFound(MCPlaneError):
    code = "not_found"
    jsonrpc_code = _INVALID_PARAMS
    default_message = "not found"


class RateLimited(MCPlaneError):
    code = "rate_limited"
    jsonrpc_code = _SERVER_ERROR
    retryable = True
    default_message = "rate limit exceeded"


class BudgetExceeded(MCPlaneError):
    code = "budget_exceeded"
    jsonrpc_code = _SERVER_ERROR
    default_message = "budget exceeded"


class Timeout(MCPlaneError):
    code = "timeout"
    jsonrpc_code = _SERVER_ERROR
    retryable = True
    default_message = "the call timed out"


class DeadlineExceeded(MCPlaneError):
    code = "deadline_exceeded"
    jsonrpc_code = _SERVER_ERROR
    default_message = "the caller's deadline has passed"


class DependencyUnavailable(MCPlaneError):
    code = "dependency_unavailable"
    jsonrpc_code = _SERVER_ERROR
    retryable = True
    default_message = "a dependency is unavailable"


class CircuitOpen(MCPlaneError):
    code = "circuit_open"
    jsonrpc_code = _SERVER_ERROR
    retryable = True
    default_message = "circuit open"


class UpstreamError(MCPlaneError):
    code = "upstream_error"
    jsonrpc_code = _SERVER_ERROR
    default_message = "upstream error"


class ToolQuarantined(MCPlaneError):
    """A gateway tool whose definition changed since it was pinned (or is unpinned, or failed the
    injection scan): withheld until an operator approves it. Not retryable: waiting does not help,
    an approval does. ``details`` names the tool, the reason and the new hash's prefix, never the
    new definition's text."""

    code = "tool_quarantined"
    jsonrpc_code = _SERVER_ERROR
    default_message = "this tool's definition is quarantined until an operator approves it"


class InvalidRequest(MCPlaneError):
    """A message that is not a JSON-RPC 2.0 request mcplane accepts (HTTP 400/415, or an error frame)."""

    code = "invalid_request"
    jsonrpc_code = _INVALID_REQUEST
    default_message = "invalid request"


class PayloadTooLarge(MCPlaneError):
    """A request body, frame or header block over its configured cap (HTTP 413/431)."""

    code = "payload_too_large"
    jsonrpc_code = _INVALID_REQUEST
    default_message = "request body too large"


class InternalError(MCPlaneError):
    code = "internal_error"
    jsonrpc_code = _INTERNAL_ERROR
    default_message = "internal error"


WIRE_ERRORS: dict[str, type[MCPlaneError]] = {
    cls.code: cls
    for cls in (
        InvalidArguments,
        Unauthenticated,
        Forbidden,
        NotFound,
        RateLimited,
        BudgetExceeded,
        Timeout,
        DeadlineExceeded,
        DependencyUnavailable,
        CircuitOpen,
        UpstreamError,
        ToolQuarantined,
        InvalidRequest,
        PayloadTooLarge,
        InternalError,
    )
}
"""The error class of each stable code a client can receive (``ConfigError`` never travels)."""


def error_object_of(result: Any) -> dict[str, Any] | None:
    """The error object an ``isError`` tool result carries, or ``None``.

    Read from ``_meta["mcplane/error"]``; a result from an mcplane older than that key (an
    upstream not yet upgraded) carried it in ``structuredContent.error`` instead, which is read
    as a fallback.
    """
    if not getattr(result, "is_error", False):
        return None
    meta: Any = getattr(result, "meta", None)
    body: Any = meta.get(ERROR_META_KEY) if isinstance(meta, dict) else None
    if not isinstance(body, dict):
        structured: Any = getattr(result, "structured_content", None)
        body = structured.get("error") if isinstance(structured, dict) else None
    return body if isinstance(body, dict) else None  # pyright: ignore[reportUnknownVariableType]
