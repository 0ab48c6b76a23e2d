"""A ``tools/call`` answer as the SDK's server writes it, for the hot path that skips its runner.

The SDK dumps a handler's result, passes it through the per-version result sieve, marks a
2026-07-28 result ``resultType: "complete"`` and stamps its ``serverInfo`` into ``_meta``
(``mcp.server.runner``); a failed call is the error's ``ErrorData`` in a JSON-RPC error. These
functions do the same on plain dicts, so what the hot path writes is what the SDK would.
"""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp_types import INTERNAL_ERROR, SERVER_INFO_META_KEY, CallToolResult, ErrorData
from mcp_types import methods as _methods
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from mcplane.jsonrpc import error_envelope
from mcplane.sdk_adapter.mcpserver import server_info_stamp

__all__ = ["INVALID_RESULT", "error_response", "stamp_server_info", "tool_result"]

INVALID_RESULT = ErrorData(code=INTERNAL_ERROR, message="Handler returned an invalid result")
"""What the SDK answers when a handler returns something that is not the method's result."""


def tool_result(result: CallToolResult, version: str, sdk: MCPServer[Any]) -> dict[str, Any]:
    """``result`` on the wire at ``version``, as the SDK's runner writes it for ``sdk``."""
    dumped = result.model_dump(by_alias=True, mode="json", exclude_none=True)
    dumped = _methods.serialize_server_result("tools/call", version, dumped)
    if version in MODERN_PROTOCOL_VERSIONS:
        dumped.setdefault("resultType", "complete")
        stamp_server_info(dumped, server_info_stamp(sdk))
    return dumped


def stamp_server_info(result: dict[str, Any], stamp: dict[str, Any]) -> None:
    """Put ``stamp`` in ``result["_meta"]`` unless a ``serverInfo`` is already there (the runner's rule).

    The ``_meta`` object is replaced, never written into: it may be the handler's own.
    """
    meta = result.get("_meta")
    if meta is None:
        result["_meta"] = {SERVER_INFO_META_KEY: stamp}
    elif isinstance(meta, dict) and meta.get(SERVER_INFO_META_KEY) is None:
        result["_meta"] = {**meta, SERVER_INFO_META_KEY: stamp}


def error_response(request_id: Any, error: ErrorData) -> dict[str, Any]:
    """The JSON-RPC error response the SDK writes for ``error``."""
    return error_envelope(request_id, error.code, error.message, error.data)
