"""The answers the HTTP tier writes itself: a JSON body, a refusal, a refused WebSocket handshake.

A request the tier refuses never became a JSON-RPC call, so every refusal has the same shape:
JSON-RPC ``-32600`` (the HTTP status says the rest) and ``data`` holding only the stable code,
built by :mod:`mcplane.jsonrpc` like every other error envelope.
"""

from __future__ import annotations

from starlette.types import Receive, Scope, Send

from mcplane.errors import DependencyUnavailable, InvalidRequest, MCPlaneError
from mcplane.jsonrpc import error_bytes

__all__ = ["NOT_RUNNING", "not_running", "refusal", "refuse_websocket", "respond"]


def refusal(error: MCPlaneError) -> bytes:
    """The JSON-RPC body of a refused HTTP request: ``-32600``, the error's message and code."""
    return error_bytes(None, InvalidRequest.jsonrpc_code, error.message, {"code": error.code})


NOT_RUNNING = refusal(DependencyUnavailable("server is not running"))


async def respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes = b"application/json",
    extra_headers: tuple[tuple[bytes, bytes], ...] = (),
) -> None:
    """A whole HTTP answer with a known length."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *extra_headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def not_running(scope: Scope, receive: Receive, send: Send) -> None:
    """The MCP endpoint before the lifespan started and after it ended: 503, nothing to serve with."""
    await respond(send, 503, NOT_RUNNING)


async def refuse_websocket(receive: Receive, send: Send, reason: str) -> None:
    """Refuse the upgrade: closing before accepting makes the server answer the handshake with 403.

    (A ``websocket.http.response`` denial could carry the JSON-RPC body, but uvicorn's default
    WebSocket implementation logs a spurious ERROR for every such denial: uvicorn PR #3138.)
    """
    message = await receive()
    if message["type"] == "websocket.connect":
        await send({"type": "websocket.close", "code": 1008, "reason": reason})
