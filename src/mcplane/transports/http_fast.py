"""The HTTP side of the hot path (see :mod:`mcplane.fastpath`).

A POST whose body is a plain ``tools/call`` is answered here with one JSON body:

* 2026-07-28 (``MCP-Protocol-Version`` names a modern revision): the SDK's inbound ladder
  validates the envelope and the ``Mcp-Method``/``Mcp-Name`` headers first;
* 2025-11-25 sessions: only for a session the SDK opened, that finished its handshake, whose
  credential matches the one that opened it, and that is not ending; the session's idle clock is
  held while the call runs, exactly as the SDK's transport does.

Cancellation works as on the SDK's path: a 2025-11-25 ``notifications/cancelled`` for a call
running here cancels it (its POST is answered ``-32800 Request cancelled``, as the SDK's transport
answers, and the notification itself goes on to the SDK for its 202); a 2026-07-28 call is
cancelled when its client goes away (the HTTP request is its only channel, so nothing is answered).

Everything else — and any body the fast path does not like — goes to the SDK unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio
import orjson
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser, authorization_context
from mcp.server.streamable_http import StreamableHTTPServerTransport
from mcp.shared.inbound import ERROR_CODE_HTTP_STATUS, find_duplicated_routing_header
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
from starlette.types import Receive, Scope, Send

from mcplane.context import ANONYMOUS, Principal
from mcplane.jsonrpc import error_envelope
from mcplane.sdk_adapter.eligibility import read_alike
from mcplane.sdk_adapter.sessions import hold_idle_clock, open_sessions, release_idle_clock, session_owner

if TYPE_CHECKING:
    from mcplane.transports.http import HTTPApp

__all__ = ["serve_fast"]

_JSON_HEADERS = [(b"content-type", b"application/json")]
REQUEST_CANCELLED = -32800
"""The code the SDK's 2025-11-25 transport answers a cancelled request with."""


def _accepts_json(accept: str) -> bool:
    for part in accept.split(","):
        media = part.split(";", 1)[0].strip().lower()
        if media in ("application/json", "application/*", "*/*"):
            return True
    return False


def _owner(scope: Scope) -> Any:
    user = scope.get("user")
    return authorization_context(user) if isinstance(user, AuthenticatedUser) else None


async def serve_fast(
    app: HTTPApp, scope: Scope, headers: dict[str, str], body: bytes, send: Send, receive: Receive
) -> bool:
    """Answer the request and return True, or return False (nothing sent) to hand it to the SDK.

    ``receive`` is the request's, its body already read: it now says only ``http.disconnect``.
    """
    fast = app.fast
    version_header = headers.get("mcp-protocol-version")
    if (
        fast is None
        or version_header is None
        or not headers.get("content-type", "").lower().startswith("application/json")
        or not _accepts_json(headers.get("accept", ""))
    ):
        return False
    if not read_alike(body):
        return False
    try:
        message = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    if version_header in MODERN_PROTOCOL_VERSIONS:
        if headers.get("mcp-session-id") is not None:
            return False
        raw_headers = scope["headers"]
        # A routing header can repeat only if some name does: the SDK's scan runs only then.
        if len({name.lower() for name, _ in raw_headers}) != len(raw_headers) and find_duplicated_routing_header(
            (k.decode("latin-1"), v.decode("latin-1")) for k, v in raw_headers
        ):
            return False
        version = fast.match(message, modern=True, headers=headers)
        if version is None:
            return False
        return await _answer(app, scope, message, version, send, None, receive)
    if version_header in HANDSHAKE_PROTOCOL_VERSIONS:
        session_id = headers.get("mcp-session-id")
        if session_id is None or session_id not in app.initialized_sessions:
            if session_id is not None and _is_initialized_notification(message):
                app.note_initialized(session_id)
            return False
        manager = app._manager
        transport = open_sessions(manager).get(session_id) if manager is not None else None
        if transport is None:
            app.initialized_sessions.discard(session_id)
            return False
        if transport.is_terminated or manager is None or session_owner(manager, session_id) != _owner(scope):
            return False
        cancelled = _cancelled_id(message)
        if cancelled is not None:
            running = app.fast_calls.get((session_id, cancelled))
            if running is not None:
                running.cancel()
            return False  # the SDK acknowledges the notification (and cancels what it runs itself)
        if fast.match(message, modern=False, session=session_id) is None:
            return False
        return await _answer(app, scope, message, version_header, send, transport, receive)
    return False


def _is_initialized_notification(message: Any) -> bool:
    return isinstance(message, dict) and message.get("method") == "notifications/initialized" and "id" not in message


def _cancelled_id(message: Any) -> Any:
    """The request id a ``notifications/cancelled`` names, else ``None``."""
    if not isinstance(message, dict) or message.get("method") != "notifications/cancelled" or "id" in message:
        return None
    params = message.get("params")
    request_id = params.get("requestId") if isinstance(params, dict) else None
    return request_id if isinstance(request_id, str | int) and not isinstance(request_id, bool) else None


async def _until_disconnect(receive: Receive, serve: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any] | None:
    """``serve()``, cancelled if the client goes away first (``None`` then).

    One future watches ``receive`` (no task group per call): its done-callback cancels the scope.
    """
    with anyio.CancelScope() as cancel_scope:
        watcher = asyncio.ensure_future(receive())

        def gone(done: asyncio.Future[Any]) -> None:
            if not done.cancelled() and done.exception() is None and done.result().get("type") == "http.disconnect":
                cancel_scope.cancel()

        watcher.add_done_callback(gone)
        try:
            return await serve()
        finally:
            watcher.remove_done_callback(gone)
            watcher.cancel()
    return None


async def _answer(
    app: HTTPApp,
    scope: Scope,
    message: dict[str, Any],
    version: str,
    send: Send,
    transport: StreamableHTTPServerTransport | None,
    receive: Receive,
) -> bool:
    fast = app.fast
    assert fast is not None
    principal = scope.get("mcplane.principal")
    if not isinstance(principal, Principal):
        principal = ANONYMOUS
    response: dict[str, Any] | None = None
    if transport is not None:
        session_id = transport.mcp_session_id
        if not hold_idle_clock(transport):
            return False
        key = (session_id, message["id"])
        with anyio.CancelScope() as running:
            app.fast_calls[key] = running
            try:
                response = await fast.serve(message, version, principal=principal, scope=scope, session_id=session_id)
            finally:
                if app.fast_calls.get(key) is running:
                    del app.fast_calls[key]
                release_idle_clock(transport)
        if response is None:  # cancelled by the client's notifications/cancelled
            response = error_envelope(message["id"], REQUEST_CANCELLED, "Request cancelled")
    else:
        response = await _until_disconnect(
            receive, lambda: fast.serve(message, version, principal=principal, scope=scope)
        )
        if response is None:
            return True  # the client is gone: nothing to answer, nobody to answer
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
