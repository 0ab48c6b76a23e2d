"""A ``tools/call`` answer as the SDK's server writes it, for the hot path that skips its runner.

The SDK dumps a handler's result, passes it through the per-version result sieve, marks a
2026-07-28 result ``resultType: "complete"`` and stamps its ``serverInfo`` into ``_meta``
(``mcp.server.runner``); a failed call is the error's ``ErrorData`` in a JSON-RPC error, and a
handler (or middleware) result that is not a ``CallToolResult`` is dumped and sieved, or refused
with the runner's ``-32603``. These functions do the same on plain dicts, so what the hot path
writes is what the SDK would. What they return is serialized at once and never changed, so the
``serverInfo`` stamp in it is the SDK's cached dump, not a copy of it.
"""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp_types import CORE_RESULT_TYPES, INTERNAL_ERROR, SERVER_INFO_META_KEY, CallToolResult, ErrorData
from mcp_types import methods as _methods
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel, ValidationError

from mcplane.jsonrpc import error_envelope
from mcplane.sdk_adapter.mcpserver import server_info_stamp_shared

__all__ = ["error_response", "other_tool_result", "plain_sieve", "stamp_server_info", "text_blocks_only", "tool_result"]


_PLAIN_KEYS = frozenset({"content", "structuredContent", "isError", "resultType"})
_TEXT_BLOCK_KEYS = frozenset({"type", "text"})


def text_blocks_only(content: object) -> bool:
    """Whether ``content`` is a list of plain text blocks (``{"type": "text", "text": str}``, nothing else)."""
    if not isinstance(content, list):
        return False
    for block in content:  # pyright: ignore[reportUnknownVariableType]
        if (
            not isinstance(block, dict)
            or block.keys() != _TEXT_BLOCK_KEYS
            or block["type"] != "text"
            or not isinstance(block["text"], str)
        ):
            return False
    return True


def plain_sieve(dumped: dict[str, Any], version: str) -> dict[str, Any] | None:
    """What the per-version sieve makes of a plain ``tools/call`` result, or ``None`` (not plain).

    Plain: text blocks only (``type`` and ``text``, nothing else), an optional structured object,
    ``isError`` and ``resultType: "complete"``, no ``_meta``. Every revision's result schema keeps
    all of it but ``resultType``, which only 2026-07-28 has; the SDK's sieve (a pydantic round trip,
    the costliest step of shaping a result) changes nothing else in it, which
    ``tests/sdk_compat/test_results.py`` checks against the sieve itself.
    """
    if not dumped.keys() <= _PLAIN_KEYS or dumped.get("resultType", "complete") != "complete":
        return None
    if not isinstance(dumped.get("isError", False), bool):
        return None
    structured = dumped.get("structuredContent")
    if structured is not None and not isinstance(structured, dict):
        return None
    if not text_blocks_only(dumped.get("content")):
        return None
    if version in MODERN_PROTOCOL_VERSIONS:
        return dumped if "resultType" in dumped else None
    if version not in HANDSHAKE_PROTOCOL_VERSIONS:
        return None
    dumped.pop("resultType", None)
    return dumped


def tool_result(result: CallToolResult, version: str, sdk: MCPServer[Any]) -> dict[str, Any]:
    """``result`` on the wire at ``version``, as the SDK's runner writes it for ``sdk``."""
    dumped = result.model_dump(by_alias=True, mode="json", exclude_none=True)
    sieved = plain_sieve(dumped, version)
    dumped = _methods.serialize_server_result("tools/call", version, dumped) if sieved is None else sieved
    if version in MODERN_PROTOCOL_VERSIONS:
        dumped.setdefault("resultType", "complete")
        stamp_server_info(dumped, server_info_stamp_shared(sdk))
    return dumped


def other_tool_result(result: object, version: str, sdk: MCPServer[Any]) -> dict[str, Any]:
    """A ``tools/call`` result that is not a ``CallToolResult``, as the runner writes it.

    ``None`` is ``{}``, a model is dumped, a mapping copied; an ``ErrorData`` is raised as the
    error it is; anything else is ``-32603 Internal server error`` (on 2025-11-25: code ``0`` and
    the runner's ``TypeError`` text, as the SDK's loop answers it); a result the per-version sieve
    refuses is ``-32603 Handler returned an invalid result`` (all raised as ``MCPError``).
    """
    if result is None:
        dumped: dict[str, Any] = {}
    elif isinstance(result, ErrorData):
        raise MCPError.from_error_data(result)
    elif isinstance(result, BaseModel):
        dumped = result.model_dump(by_alias=True, mode="json", exclude_none=True)
    elif isinstance(result, dict):
        dumped = {str(key): value for key, value in result.items()}  # pyright: ignore[reportUnknownVariableType]
    else:
        modern = version in MODERN_PROTOCOL_VERSIONS
        if modern:
            raise MCPError(code=INTERNAL_ERROR, message="Internal server error")
        # The 2025-11-25 loop answers an unexpected exception with code 0 and its text (the runner's own).
        raise MCPError(code=0, message=f"handler returned {type(result).__name__}; expected BaseModel, dict, or None")
    modern = version in MODERN_PROTOCOL_VERSIONS
    result_type = dumped.get("resultType")
    if not modern or not isinstance(result_type, str) or result_type in CORE_RESULT_TYPES:
        try:
            dumped = _methods.serialize_server_result("tools/call", version, dumped)
        except ValidationError:
            raise MCPError(code=INTERNAL_ERROR, message="Handler returned an invalid result") from None
    if modern:
        if dumped.get("resultType") is None:
            dumped["resultType"] = "complete"
        stamp_server_info(dumped, server_info_stamp_shared(sdk))
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
