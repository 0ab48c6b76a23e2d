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

import math
from collections.abc import Mapping
from typing import Any

import anyio
from mcp.server.auth.middleware.bearer_auth import AuthorizationContext
from mcp.server.streamable_http import GET_STREAM_KEY, StreamableHTTPServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

__all__ = [
    "SDKSessionManager",
    "SDKSessionTransport",
    "hold_idle_clock",
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
    request itself). Every True must be paired with :func:`release_idle_clock`.
    """
    idle = transport.idle_scope
    if idle is None or transport._idle_timeout is None:  # pyright: ignore[reportPrivateUsage]
        return True
    if idle.cancel_called:
        return False
    transport._requests_in_flight += 1  # pyright: ignore[reportPrivateUsage]
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
        idle.deadline = anyio.current_time() + idle_timeout


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
    """The SDK's transport, with whether its standalone GET stream is open here."""

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
