"""JSON-RPC 2.0 envelopes: the one place an error response is built.

Every transport, the HTTP tier, the fast paths and the gateway answer a failed request with the
same shape, ``{"jsonrpc": "2.0", "id": ID, "error": {"code", "message", "data"?}}``. An id that
is not a string or an integer (a bool, an object, a missing id) becomes ``null``, as JSON-RPC
asks of a request whose id cannot be read.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pydantic_core

from mcplane.errors import InternalError, MCPlaneError

__all__ = [
    "answer_bytes",
    "dumps",
    "error_bytes",
    "error_envelope",
    "error_of",
    "mcplane_error_envelope",
    "safe_id",
]

logger = logging.getLogger("mcplane.errors")


def safe_id(request_id: Any) -> str | int | None:
    """``request_id`` when it can be echoed (a string or an integer, not a bool), else ``None``."""
    if isinstance(request_id, str | int) and not isinstance(request_id, bool):
        return request_id
    return None


def error_of(code: int, message: str, data: Any = None) -> dict[str, Any]:
    """The ``error`` member: ``{"code", "message", "data"?}``."""
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return error


def error_envelope(request_id: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    """A whole JSON-RPC error response for ``request_id``."""
    return {"jsonrpc": "2.0", "id": safe_id(request_id), "error": error_of(code, message, data)}


def mcplane_error_envelope(request_id: Any, error: MCPlaneError, correlation_id: str | None = None) -> dict[str, Any]:
    """The JSON-RPC error response for an :class:`~mcplane.errors.MCPlaneError`: its object in ``data``."""
    return error_envelope(request_id, error.jsonrpc_code, error.message, error.to_dict(correlation_id))


def error_bytes(request_id: Any, code: int, message: str, data: Any = None) -> bytes:
    """:func:`error_envelope`, serialized."""
    return orjson.dumps(error_envelope(request_id, code, message, data))


def dumps(value: Any) -> bytes:
    """``value`` as JSON: orjson's bytes, or, for what orjson refuses and the SDK's writer takes (an
    integer beyond 64 bits), pydantic's, as the SDK writes it. Raises
    ``pydantic_core.PydanticSerializationError`` for what neither writes (a lone surrogate, nesting
    past their depth)."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return pydantic_core.to_json(value)


def answer_bytes(response: dict[str, Any]) -> bytes:
    """A response the hot path built, serialized (:func:`dumps`); one nobody can write (a tool's result
    holding a lone surrogate) becomes the ``internal_error`` response for its id, as a crash would."""
    try:
        return dumps(response)
    except pydantic_core.PydanticSerializationError as exc:
        logger.error("a response could not be written as JSON (%s); answered internal_error", str(exc)[:200])
        return orjson.dumps(mcplane_error_envelope(response.get("id"), InternalError()))
