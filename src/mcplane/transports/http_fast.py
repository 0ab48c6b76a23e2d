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
import types
from collections.abc import Callable, Coroutine, Generator
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser, authorization_context
from mcp.server.streamable_http import StreamableHTTPServerTransport
from mcp.shared.inbound import ERROR_CODE_HTTP_STATUS, find_duplicated_routing_header
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
from starlette.types import Receive, Scope, Send

from mcplane.context import ANONYMOUS, Principal
from mcplane.jsonrpc import answer_bytes, error_envelope
from mcplane.sdk_adapter.eligibility import read_alike
from mcplane.sdk_adapter.sessions import hold_idle_clock, open_sessions, release_idle_clock, session_owner
from mcplane.transports.http_write import on_disconnect

if TYPE_CHECKING:
    from mcplane.transports.http import HTTPApp

__all__ = ["Interruption", "interruptible", "serve_fast"]

_T = TypeVar("_T")

_JSON_TYPE = (b"content-type", b"application/json")
REQUEST_CANCELLED = -32800
"""The code the SDK's 2025-11-25 transport answers a cancelled request with."""


def _accepts_json(accept: str) -> bool:
    for part in accept.split(","):
        media = part.split(";", 1)[0].strip().lower()
        if media in ("application/json", "application/*", "*/*"):
            return True
    return False


_ACCEPT_VERDICTS_KEPT = 64
_accept_verdicts: dict[str, bool] = {}
"""``Accept`` values already judged (clients send one or two; bounded, as any value is a client's)."""


def accepts_json(accept: str) -> bool:
    """Whether an ``Accept`` value admits a JSON answer, remembered per value."""
    try:
        return _accept_verdicts[accept]
    except KeyError:
        verdict = _accepts_json(accept)
        if len(_accept_verdicts) >= _ACCEPT_VERDICTS_KEPT:
            _accept_verdicts.clear()
        _accept_verdicts[accept] = verdict
        return verdict


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
        or not accepts_json(headers.get("accept", ""))
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


class Interruption:
    """How something outside a suspended hot-path call cancels it: its client went away, or a
    ``notifications/cancelled`` named it.

    The call runs in the request's own task, so :meth:`cancel` cancels that task (no cancel
    scope per call); the task's cancellation is taken back once the call has ended.
    """

    __slots__ = ("_armed", "_fired", "_task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self._task = task
        self._armed = True
        self._fired = False

    def cancel(self) -> None:
        """Cancel the call (nothing once it has ended, or when cancelled already)."""
        if self._armed and not self._fired:
            self._fired = True
            self._task.cancel()

    def settle(self) -> bool:
        """Disarm; True when this interruption (and only it) cancelled the call's task."""
        self._armed = False
        return self._fired and self._task.uncancel() == 0


@types.coroutine
def _resume(call: Coroutine[Any, Any, _T], pending: Any) -> Generator[Any, Any, _T]:
    """Go on with ``call``, whose first step yielded ``pending``, as ``await call`` would have."""
    while True:
        try:
            sent = yield pending
        except GeneratorExit:
            call.close()
            raise
        except BaseException as exc:  # thrown into this task (its cancellation): on into the call
            try:
                pending = call.throw(exc)
            except StopIteration as done:
                return done.value
        else:
            try:
                pending = call.send(sent)
            except StopIteration as done:
                return done.value


async def interruptible(
    call: Coroutine[Any, Any, _T], arm: Callable[[Interruption], Callable[[], None]]
) -> tuple[bool, _T | None]:
    """Run ``call`` in this task: ``(True, its result)``, or ``(False, None)`` when interrupted.

    A call that ends without suspending (a plain tool that awaits nothing) costs no more than
    awaiting it. One that suspends is handed over to ``arm`` from then on: it tells ``arm`` the
    :class:`Interruption` that can cancel it (only a suspended call can be interrupted: nothing
    else runs before it suspends) and calls what ``arm`` returned once the call has ended.
    """
    try:
        pending = call.send(None)
    except StopIteration as done:
        return True, done.value
    task = asyncio.current_task()
    assert task is not None
    interruption = Interruption(task)
    disarm = arm(interruption)
    try:
        result = await _resume(call, pending)
    except asyncio.CancelledError:
        disarm()
        if interruption.settle():
            return False, None
        raise
    except BaseException:
        disarm()
        interruption.settle()
        raise
    disarm()
    interruption.settle()  # the call caught its cancellation and answered: that answer stands
    return True, result


def _until_disconnect(receive: Receive) -> Callable[[Interruption], Callable[[], None]]:
    """Arms an interruption to fire when ``receive`` says ``http.disconnect`` (the client went away).

    Served by mcplane's own uvicorn protocol, the connection calls back when it is lost
    (:func:`~mcplane.transports.http_write.on_disconnect`: no task); elsewhere one future watches
    ``receive`` while the call is suspended. Neither is set up for a call that never suspends.
    """

    def arm(interruption: Interruption) -> Callable[[], None]:
        stop = on_disconnect(receive, interruption.cancel)
        if stop is not None:
            return stop
        watcher = asyncio.ensure_future(receive())

        def gone(done: asyncio.Future[Any]) -> None:
            if not done.cancelled() and done.exception() is None and done.result().get("type") == "http.disconnect":
                interruption.cancel()

        watcher.add_done_callback(gone)

        def disarm() -> None:
            watcher.remove_done_callback(gone)
            watcher.cancel()

        return disarm

    return arm


def _registered(
    calls: dict[tuple[str | None, Any], Interruption], key: tuple[str | None, Any]
) -> Callable[[Interruption], Callable[[], None]]:
    """Arms an interruption kept in ``calls`` under ``key`` (where ``notifications/cancelled`` finds it)."""

    def arm(interruption: Interruption) -> Callable[[], None]:
        calls[key] = interruption

        def disarm() -> None:
            if calls.get(key) is interruption:
                del calls[key]

        return disarm

    return arm


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
        try:
            answered, response = await interruptible(
                fast.serve(message, version, principal=principal, scope=scope, session_id=session_id),
                _registered(app.fast_calls, key),
            )
        finally:
            release_idle_clock(transport)
        if not answered or response is None:  # cancelled by the client's notifications/cancelled
            response = error_envelope(message["id"], REQUEST_CANCELLED, "Request cancelled")
    else:
        answered, response = await interruptible(
            fast.serve(message, version, principal=principal, scope=scope), _until_disconnect(receive)
        )
        if not answered or response is None:
            return True  # the client is gone: nothing to answer, nobody to answer
    status = 200
    if transport is None and "error" in response:
        status = ERROR_CODE_HTTP_STATUS.get(response["error"].get("code"), 200)
    payload = answer_bytes(response)
    headers = [_JSON_TYPE, (b"content-length", b"%d" % len(payload))]
    if transport is not None and transport.mcp_session_id is not None:
        headers.append((b"mcp-session-id", transport.mcp_session_id.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
    return True
