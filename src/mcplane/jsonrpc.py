"""JSON-RPC 2.0 envelopes: the one place an error response is built.

Every transport, the HTTP tier, the fast paths and the gateway answer a failed request with the
same shape, ``{"jsonrpc": "2.0", "id": ID, "error": {"code", "message", "data"?}}``. An id that
is not a string or an integer (a bool, an object, a missing id) becomes ``null``, as JSON-RPC
asks of a request whose id cannot be read.
"""

from __future__ import annotations

from typing import Any

import orjson

from mcplane.errors import MCPlaneError

__all__ = ["error_bytes", "error_envelope", "error_of", "mcplane_error_envelope", "safe_id"]


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
