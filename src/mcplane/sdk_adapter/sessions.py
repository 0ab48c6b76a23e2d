"""The SDK's 2025-11-25 session manager and transport, as mcplane extends and reads them.

mcplane's sessions (sealed ids, adoption on any replica, a relaying write stream: see
:mod:`mcplane.transports.sessions`) are the SDK's ``StreamableHTTPSessionManager`` and
``StreamableHTTPServerTransport`` with a few hooks. The SDK keeps its session table, the owners'
credentials, the creation lock, the task group and the idle bookkeeping in private attributes;
:class:`SDKSessionManager` and :class:`SDKSessionTransport` name them publicly, and the functions
below let the HTTP hot path do what the SDK's transport does around one request (look the session
up, check its owner, hold its idle clock) without reaching into either class.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncGenerator, Mapping
from typing import TYPE_CHECKING, Any

import anyio
from mcp.server.auth.middleware.bearer_auth import AuthorizationContext
from mcp.server.streamable_http import GET_STREAM_KEY, StreamableHTTPServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.message import SessionMessage
from starlette.types import Receive, Scope, Send

if TYPE_CHECKING:
    from mcplane.sdk_adapter.streams import ReadStream, WriteStream

__all__ = [
    "IdleClock",
    "SDKSessionManager",
    "SDKSessionTransport",
    "hold_idle_clock",
    "idle_deadline",
    "open_sessions",
    "park_if_idle",
    "release_idle_clock",
    "session_owner",
]


def open_sessions(manager: StreamableHTTPSessionManager) -> Mapping[str, StreamableHTTPServerTransport]:
    """The manager's live sessions by id (the SDK's own table, not a copy: read it, never keep it)."""
    return manager._server_instances  # pyright: ignore[reportPrivateUsage]


def session_owner(manager: StreamableHTTPSessionManager, session_id: str) -> AuthorizationContext | None:
    """The credential that opened ``session_id`` (``None``: opened without one), as the SDK compares it."""
    return manager._session_owners.get(session_id)  # pyright: ignore[reportPrivateUsage]


def hold_idle_clock(transport: StreamableHTTPServerTransport) -> bool:
    """Suspend the session's idle countdown for one request, as the SDK's ``handle_request`` does.

    False when the idle period already ran out (the session is ending: the SDK answers such a
    request itself). Every True must be paired with :func:`release_idle_clock`. On a
    :class:`SDKSessionTransport` with its :class:`IdleClock` this only counts the request.
    """
    idle = transport.idle_scope
    if idle is None or transport._idle_timeout is None:  # pyright: ignore[reportPrivateUsage]
        return True
    if idle.cancel_called:
        return False
    transport._requests_in_flight += 1  # pyright: ignore[reportPrivateUsage]
    if not isinstance(transport, SDKSessionTransport) or transport.idle_clock is None:
        idle.deadline = math.inf
    return True


def release_idle_clock(transport: StreamableHTTPServerTransport) -> None:
    """End a :func:`hold_idle_clock`: the countdown restarts when the last request in flight ends."""
    idle = transport.idle_scope
    idle_timeout = transport._idle_timeout  # pyright: ignore[reportPrivateUsage]
    if idle is None or idle_timeout is None:
        return
    transport._requests_in_flight -= 1  # pyright: ignore[reportPrivateUsage]
    if not transport._requests_in_flight:  # pyright: ignore[reportPrivateUsage]
        clock = transport.idle_clock if isinstance(transport, SDKSessionTransport) else None
        if clock is None:
            idle.deadline = anyio.current_time() + idle_timeout
        else:
            clock.restart()


def idle_deadline(transport: StreamableHTTPServerTransport) -> float:
    """When the session's idle period runs out if nothing happens before (the event loop's clock;
    ``math.inf``: a request is in flight, or none has ended yet, or it has no idle timeout)."""
    idle = transport.idle_scope
    if idle is None or transport._idle_timeout is None:  # pyright: ignore[reportPrivateUsage]
        return math.inf
    clock = transport.idle_clock if isinstance(transport, SDKSessionTransport) else None
    if clock is None:
        return idle.deadline
    return clock.deadline(transport._requests_in_flight)  # pyright: ignore[reportPrivateUsage]


class IdleClock:
    """A session's idle countdown behind one event-loop timer that lives as long as the session.

    The SDK's transport suspends its idle scope's deadline while a request is in flight and sets it
    again when the last one ends; on asyncio each of those makes or cancels a loop timer, i.e. two
    per request. Here a request that ends only notes the time (:meth:`restart`). The timer, armed
    for the end of the idle period when it is not armed already, looks when it fires: a request
    in flight, and it is left unarmed (the end of that request arms it); the period restarted
    since, and it is armed again for the new end; else the period ran out and the idle scope is
    cancelled, when the scope's own deadline would have been.
    """

    __slots__ = ("_idle_since", "_loop", "_scope", "_stopped", "_timeout", "_timer", "_transport")

    def __init__(
        self,
        transport: StreamableHTTPServerTransport,
        scope: anyio.CancelScope,
        timeout: float,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._transport = transport
        self._scope = scope
        self._timeout = timeout
        self._loop = loop
        self._idle_since = math.inf
        self._timer: asyncio.TimerHandle | None = None
        self._stopped = False

    def restart(self) -> None:
        """The last request in flight ended: the idle period starts now."""
        now = self._idle_since = self._loop.time()
        if self._timer is None and not self._stopped:
            self._timer = self._loop.call_at(now + self._timeout, self._fire)

    def deadline(self, in_flight: int) -> float:
        return math.inf if in_flight else self._idle_since + self._timeout

    def stop(self) -> None:
        """The session ends: disarm the timer (for good)."""
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        if self._scope.cancel_called or self._transport._requests_in_flight:  # pyright: ignore[reportPrivateUsage]
            return
        due = self._idle_since + self._timeout
        if self._loop.time() >= due:
            self._scope.cancel()
        else:
            self._timer = self._loop.call_at(due, self._fire)


def park_if_idle(transport: StreamableHTTPServerTransport) -> bool:
    """End the session's idle period now, as if its idle timeout had run out: only when it has an
    idle timeout, no request in flight and no GET stream open (True: its server loop is ending)."""
    idle = transport.idle_scope
    if idle is None or transport._idle_timeout is None:  # pyright: ignore[reportPrivateUsage]
        return False
    if transport._requests_in_flight or GET_STREAM_KEY in transport._request_streams:  # pyright: ignore[reportPrivateUsage]
        return False
    idle.cancel()
    return True


class SDKSessionTransport(StreamableHTTPServerTransport):
    """The SDK's transport, with whether its standalone GET stream is open here, and its idle
    countdown kept by an :class:`IdleClock` on asyncio (elsewhere by the idle scope's deadline,
    as the SDK keeps it): every request, the SDK's and the hot path's, holds it the same way."""

    idle_clock: IdleClock | None = None

    @contextlib.asynccontextmanager
    async def connect(
        self,
    ) -> AsyncGenerator[tuple[ReadStream[SessionMessage | Exception], WriteStream[SessionMessage]]]:
        async with super().connect() as streams:
            idle, timeout = self.idle_scope, self._idle_timeout
            clock = None
            if idle is not None and timeout is not None:
                try:
                    loop = asyncio.get_running_loop()
                except RuntimeError:  # another event loop than asyncio's (trio): the scope's deadline
                    loop = None
                if loop is not None:
                    clock = self.idle_clock = IdleClock(self, idle, timeout, loop)
            try:
                yield streams
            finally:
                if clock is not None:
                    clock.stop()

    async def handle_request(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The SDK's ``handle_request``, its idle bookkeeping done by :func:`hold_idle_clock`."""
        if not hold_idle_clock(self):  # the idle period ran out: the SDK answers as terminated
            await super().handle_request(scope, receive, send)
            return
        try:
            await self._handle_request(scope, receive, send)
        finally:
            release_idle_clock(self)

    @property
    def has_standalone_stream(self) -> bool:
        return GET_STREAM_KEY in self._request_streams


class SDKSessionManager(StreamableHTTPSessionManager):
    """The SDK's session manager with its private state named, and its two creation hooks public.

    Subclasses override :meth:`admit` (a session opened by ``initialize`` here); :meth:`register`,
    :meth:`discard` and the properties give them the SDK's table, lock, task group and lifespan state.
    """

    def admit(self, requestor: AuthorizationContext | None) -> StreamableHTTPServerTransport | None:
        """A new session for an ``initialize`` (``None``: refused), registered (the SDK's, by default)."""
        return super()._admit_session(requestor)

    def _admit_session(self, requestor: AuthorizationContext | None) -> StreamableHTTPServerTransport | None:
        return self.admit(requestor)

    @property
    def sessions(self) -> Mapping[str, StreamableHTTPServerTransport]:
        """The live sessions by id (see :func:`open_sessions`)."""
        return self._server_instances

    def register(
        self, session_id: str, transport: StreamableHTTPServerTransport, requestor: AuthorizationContext | None
    ) -> None:
        """Enter a session in the SDK's table, with the credential that owns it."""
        if requestor is not None:
            self._session_owners[session_id] = requestor
        self._server_instances[session_id] = transport

    async def discard(self, session_id: str, transport: StreamableHTTPServerTransport) -> None:
        """Close a session's transport and forget it, as the SDK does when a session ends."""
        await self._discard_session(session_id, transport)

    @property
    def creation_lock(self) -> anyio.Lock:
        """The lock the SDK holds while it creates a session."""
        return self._session_creation_lock

    @property
    def task_group(self) -> anyio.abc.TaskGroup | None:
        """The task group the sessions' server loops run in (``None`` while the manager is not running)."""
        return self._task_group

    @property
    def lifespan_state(self) -> Any:
        """The server's lifespan state, handed to each session's server loop."""
        return self._lifespan_state
