"""The SDK's Streamable HTTP client transport, as the gateway's lean lane copies it.

The lean lane (:mod:`mcplane.gateway.lean`) sends a request on an SDK session's connection
without the SDK's transport, so the upstream must see the request the transport would write and
the gateway must read the answer as the transport reads it: every garbled or failed answer
becomes the ``MCPError`` the transport would raise (``Failed to parse ...``, ``Session
terminated``, ``Server returned an error response``, ...), so breakers, retries and error codes
see the same thing on either path. These are those rules, in one place.
"""

from __future__ import annotations

from typing import Any

import orjson
import pydantic_core
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, PARSE_ERROR, ErrorData
from pydantic import BaseModel, ValidationError

from mcplane.jsonrpc import error_envelope
from mcplane.sdk_adapter.eligibility import read_alike

__all__ = [
    "BASE_HEADERS",
    "RESUME_ATTEMPTS",
    "RESUME_DELAY_MS",
    "content_type_failure",
    "error_data",
    "jsonrpc_response",
    "loads_answer",
    "parse_failure",
    "reply_body",
    "request_body",
    "status_failure",
]

BASE_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
"""What the transport's POST asks for and sends."""
RESUME_ATTEMPTS = 2
RESUME_DELAY_MS = 1000
"""The transport's: resumptions of a closed stream without a new event between them, and the
wait before one when the upstream named none (``retry:``)."""


def request_body(request_id: int, data: dict[str, Any]) -> bytes:
    """A stamped request (``method``, ``params``) as the transport writes it."""
    return orjson.dumps({"jsonrpc": "2.0", "id": request_id, **data})


def reply_body(request_id: Any, answer: BaseModel) -> bytes:
    """The answer to an upstream's question on the call's stream: its result, or its error."""
    if isinstance(answer, ErrorData):
        return orjson.dumps(error_envelope(request_id, answer.code, answer.message, answer.data))
    return orjson.dumps(
        {"jsonrpc": "2.0", "id": request_id, "result": answer.model_dump(by_alias=True, mode="json", exclude_none=True)}
    )


def parse_failure(why: str, prefix: str = "Failed to parse JSON response") -> MCPError:
    """The transport's stand-in for an answer it cannot read."""
    return MCPError(PARSE_ERROR, f"{prefix}: {why[:200]}")


def loads_answer(content: bytes) -> Any:
    """A JSON answer body, or the transport's parse failure. A body with a run of twenty digits (an
    integer beyond 64 bits, which orjson reads as a float) is read by pydantic's parser, as the SDK
    client reads it: the integer stays exact."""
    try:
        return orjson.loads(content) if read_alike(content) else pydantic_core.from_json(content)
    except ValueError as exc:  # orjson.JSONDecodeError is one
        raise parse_failure(str(exc)) from None


def jsonrpc_response(message: Any, request_id: int, prefix: str) -> dict[str, Any]:
    """``message`` if it is the JSON-RPC answer to ``request_id``, else the transport's parse failure."""
    if (
        not isinstance(message, dict)
        or message.get("jsonrpc") != "2.0"
        or message.get("id") != request_id
        or (("result" in message) == ("error" in message))
    ):
        raise parse_failure("not a JSON-RPC response to the request", prefix)
    return message  # pyright: ignore[reportUnknownVariableType]


def error_data(error: Any) -> ErrorData:
    """The ``error`` member of an answer, or the transport's parse failure."""
    try:
        return ErrorData.model_validate(error)
    except ValidationError:
        raise parse_failure("malformed JSON-RPC error") from None


def status_failure(status: int, *, in_session: bool) -> MCPError:
    """What the transport raises for a ``202`` answer to a request, or a ``4xx``/``5xx`` without a
    JSON-RPC error in it (a ``404`` in a session: the session is gone)."""
    if status == 202:
        return MCPError(INVALID_REQUEST, "server answered a request with 202 Accepted")
    if status == 404:
        return (
            MCPError(INVALID_REQUEST, "Session terminated") if in_session else MCPError(METHOD_NOT_FOUND, "Not Found")
        )
    return MCPError(INTERNAL_ERROR, "Server returned an error response")


def content_type_failure(content_type: str) -> MCPError:
    """What the transport raises for an answer that is neither JSON nor an event stream."""
    return MCPError(INVALID_REQUEST, f"Unexpected content type: {content_type}")
