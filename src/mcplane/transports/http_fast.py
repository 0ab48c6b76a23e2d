"""The HTTP side of the hot path (see :mod:`mcplane.fastpath`).

A POST whose body is a plain ``tools/call`` is answered here with one JSON body:

* 2026-07-28 (``MCP-Protocol-Version`` names a modern revision): the SDK's inbound ladder
  validates the envelope and the ``Mcp-Method``/``Mcp-Name`` headers first;
* 2025-11-25 sessions: only for a session the SDK opened, that finished its handshake, whose
  credential matches the one that opened it, and that is not ending; the session's idle clock is
  held while the call runs, exactly as the SDK's transport does.

Everything else — and any body the fast path does not like — goes to the SDK unchanged.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import anyio
import orjson
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser, authorization_context
from mcp.server.streamable_http import StreamableHTTPServerTransport
from mcp.shared.inbound import ERROR_CODE_HTTP_STATUS, find_duplicated_routing_header
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
from starlette.types import Scope, Send

from mcplane.context import ANONYMOUS, Principal

if TYPE_CHECKING:
    from mcplane.transports.http import HTTPApp

__all__ = ["serve_fast"]

_JSON_HEADERS = [(b"content-type", b"application/json")]


def _accepts_json(accept: str) -> bool:
    for part in accept.split(","):
        media = part.split(";", 1)[0].strip().lower()
        if media in ("application/json", "application/*", "*/*"):
            return True
    return False


def _owner(scope: Scope) -> Any:
    user = scope.get("user")
    return authorization_context(user) if isinstance(user, AuthenticatedUser) else None


async def serve_fast(app: HTTPApp, scope: Scope, headers: dict[str, str], body: bytes, send: Send) -> bool:
    """Answer the request and return True, or return False (nothing sent) to hand it to the SDK."""
    fast = app.fast
    version_header = headers.get("mcp-protocol-version")
    if (
        fast is None
        or version_header is None
        or not headers.get("content-type", "").lower().startswith("application/json")
        or not _accepts_json(headers.get("accept", ""))
    ):
        return False
    try:
        message = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    if version_header in MODERN_PROTOCOL_VERSIONS:
        if headers.get("mcp-session-id") is not None:
            return False
        if find_duplicated_routing_header((k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]):
            return False
        version = fast.match(message, modern=True, headers=headers)
        if version is None:
            return False
        return await _answer(app, scope, message, version, send, None)
    if version_header in HANDSHAKE_PROTOCOL_VERSIONS:
        session_id = headers.get("mcp-session-id")
        if session_id is None or session_id not in app.initialized_sessions:
            if session_id is not None and _is_initialized_notification(message):
                app.note_initialized(session_id)
            return False
        manager = app._manager
        transport = manager._server_instances.get(session_id) if manager is not None else None
        if transport is None:
            app.initialized_sessions.discard(session_id)
            return False
        if transport.is_terminated or manager is None or manager._session_owners.get(session_id) != _owner(scope):
            return False
        if fast.match(message, modern=False, session=session_id) is None:
            return False
        return await _answer(app, scope, message, version_header, send, transport)
    return False


def _is_initialized_notification(message: Any) -> bool:
    return isinstance(message, dict) and message.get("method") == "notifications/initialized" and "id" not in message


async def _answer(
    app: HTTPApp,
    scope: Scope,
    message: dict[str, Any],
    version: str,
    send: Send,
    transport: StreamableHTTPServerTransport | None,
) -> bool:
    fast = app.fast
    assert fast is not None
    principal = scope.get("mcplane.principal")
    if not isinstance(principal, Principal):
        principal = ANONYMOUS
    if transport is not None and transport.idle_scope is not None and transport._idle_timeout is not None:
        if transport.idle_scope.cancel_called:
            return False
        transport._requests_in_flight += 1
        transport.idle_scope.deadline = math.inf
        try:
            response = await fast.serve(
                message, version, principal=principal, scope=scope, session_id=transport.mcp_session_id
            )
        finally:
            transport._requests_in_flight -= 1
            if not transport._requests_in_flight:
                transport.idle_scope.deadline = anyio.current_time() + transport._idle_timeout
    else:
        response = await fast.serve(message, version, principal=principal, scope=scope)
    status = 200
    if transport is None and "error" in response:
        status = ERROR_CODE_HTTP_STATUS.get(response["error"].get("code"), 200)
    payload = orjson.dumps(response)
    headers = [*_JSON_HEADERS, (b"content-length", str(len(payload)).encode())]
    if transport is not None and transport.mcp_session_id is not None:
        headers.append((b"mcp-session-id", transport.mcp_session_id.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
    return True
