"""One JSON-RPC message per frame (a WebSocket text frame, a stdio line): decode or explain.

A frame that is not JSON gets a ``-32700`` parse error; JSON that is not a JSON-RPC message
gets ``-32600`` with the request id when one can be read. Either way the connection lives on.
"""

from __future__ import annotations

from typing import Any

import orjson
from mcp.shared.message import SessionMessage
from mcp_types import jsonrpc_message_adapter
from pydantic import ValidationError

from mcplane.jsonrpc import error_bytes

__all__ = ["PARSE_ERROR_FRAME", "decode_frame", "decode_value", "encode_message", "error_frame"]


def error_frame(request_id: Any, code: int, message: str, mcplane_code: str) -> str:
    """The text of a JSON-RPC error answer whose ``data`` names mcplane's code (an unreadable id is ``null``)."""
    return error_bytes(request_id, code, message, {"code": mcplane_code}).decode()


PARSE_ERROR_FRAME = error_frame(None, -32700, "parse error: the frame is not valid JSON", "invalid_request")


def decode_frame(frame: str | bytes) -> SessionMessage | str:
    """The message a frame carries, or the text of the error frame to answer with."""
    try:
        raw = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return PARSE_ERROR_FRAME
    return decode_value(raw)


def decode_value(raw: Any) -> SessionMessage | str:
    """The message an already-parsed frame carries, or the text of the error frame to answer with."""
    if isinstance(raw, list):
        return error_frame(None, -32600, "batches are not supported", "invalid_request")
    try:
        message = jsonrpc_message_adapter.validate_python(raw, by_name=False)
    except ValidationError:
        request_id = raw.get("id") if isinstance(raw, dict) else None
        return error_frame(request_id, -32600, "invalid request: not a JSON-RPC 2.0 message", "invalid_request")
    return SessionMessage(message)


def encode_message(message: SessionMessage) -> str:
    return message.message.model_dump_json(by_alias=True, exclude_unset=True)
