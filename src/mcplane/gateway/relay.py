"""What flows back from an upstream to the gateway's caller: list changes, progress, questions.

* **list changed**: when an upstream's catalog changes, every gateway client hears it: 2026-07-28
  clients on their ``subscriptions/listen`` streams (an event on the plane's subscription bus),
  2025-11-25 sessions as ``notifications/{tools,resources,prompts}/list_changed`` on their
  connection. :class:`ListChangedRelay` learns the handshake-era connections with a server
  middleware that notes each one when it initializes or lists.
* **progress**: an upstream's ``notifications/progress`` for a call becomes progress on the
  caller's own request (:func:`progress_relay`); only when the caller asked for progress.
* **cancellation**: a caller cancelling its gateway call cancels the task awaiting the upstream
  call; the SDK client then sends the upstream ``notifications/cancelled`` (nothing to add here).
* **elicitation**: an upstream's ``elicitation/create`` during a call is asked of that call's
  caller (:func:`relay_elicitation`) and its answer returned; when the caller cannot be asked
  (no back channel, no elicitation capability, a 2026-07-28 caller, or no single caller to ask),
  the upstream gets ``decline``. The caller is the one whose task sent the call (Streamable HTTP
  upstreams and 2026-07-28 input-required rounds run the question in that task); over a stdio or
  WebSocket legacy session, which carries no link from question to call, it is the endpoint's
  only call in flight, and with several in flight the question is declined.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import anyio
from mcp.shared.message import ServerMessageMetadata
from mcp.shared.subscriptions import PromptsListChanged, ResourcesListChanged, ToolsListChanged
from mcp_types import ClientCapabilities, ElicitationCapability, ElicitRequest, ElicitRequestParams, ElicitResult
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

if TYPE_CHECKING:
    from mcplane.app import Plane
    from mcplane.context import Context

__all__ = ["ListChangedRelay", "current_caller", "progress_relay", "relay_elicitation"]

logger = logging.getLogger("mcplane.gateway")

current_caller: ContextVar[Context | None] = ContextVar("mcplane_gateway_caller", default=None)
"""The gateway call on whose behalf this task talks to an upstream (set around one attempt)."""

_TRACKED = frozenset({"notifications/initialized", "tools/list", "resources/list", "prompts/list"})
NOTIFY_TIMEOUT = 2.0


class ListChangedRelay:
    """Tells gateway clients that the merged catalog changed (install :meth:`middleware` first)."""

    def __init__(self, plane: Plane) -> None:
        self._plane = plane
        self._connections: weakref.WeakSet[Any] = weakref.WeakSet()
        self._sessions: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()

    async def middleware(self, ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
        """A server middleware: remembers each handshake-era connection that initializes or lists.

        It has nothing to do with ``tools/call``, so it leaves mcplane's hot path on
        (``FastPath.transparent``).
        """
        if ctx.method == "initialize":  # the session's capabilities are known once it is answered
            result = await call_next(ctx)
            connection = getattr(ctx.session, "_connection", None)
            session_id = getattr(connection, "session_id", None)
            version = getattr(connection, "protocol_version", None)
            if isinstance(session_id, str) and version not in MODERN_PROTOCOL_VERSIONS:
                self._sessions[session_id] = connection
            return result
        if ctx.method in _TRACKED:
            connection = getattr(ctx.session, "_connection", None)
            if connection is not None and connection.protocol_version not in MODERN_PROTOCOL_VERSIONS:
                self._connections.add(connection)
        return await call_next(ctx)

    def hot_path_caller(self, session_id: str) -> bool:
        """Whether upstream tool calls of this 2025-11-25 session may skip the SDK's dispatch: only
        when its client cannot be asked an upstream's question (no elicitation capability), since
        relaying a question needs the SDK's request context. Unknown sessions are refused."""
        connection = self._sessions.get(session_id)
        if connection is None:
            return False
        capabilities = getattr(connection, "client_capabilities", None)
        return capabilities is not None and getattr(capabilities, "elicitation", None) is None

    @property
    def connections(self) -> int:
        return len(self._connections)

    async def changed(self, kinds: Iterable[str]) -> None:
        """``kinds``: ``tools``, ``resources``, ``prompts`` (what changed)."""
        kinds = set(kinds)
        if not kinds:
            return
        bus = self._plane.sdk._subscriptions  # pyright: ignore[reportPrivateUsage]
        with anyio.move_on_after(NOTIFY_TIMEOUT):
            if "tools" in kinds:
                await bus.publish(ToolsListChanged())
            if "resources" in kinds:
                await bus.publish(ResourcesListChanged())
            if "prompts" in kinds:
                await bus.publish(PromptsListChanged())
            for connection in list(self._connections):
                if "tools" in kinds:
                    await connection.send_tool_list_changed()
                if "resources" in kinds:
                    await connection.send_resource_list_changed()
                if "prompts" in kinds:
                    await connection.send_prompt_list_changed()


def _wants_progress(ctx: Context) -> bool:
    request_context = ctx._request_context  # pyright: ignore[reportPrivateUsage]
    meta: Any = request_context.meta if request_context is not None else None
    return isinstance(meta, dict) and (meta.get("progress_token") is not None or meta.get("progressToken") is not None)


def progress_relay(ctx: Context) -> Callable[[float, float | None, str | None], Awaitable[None]] | None:
    """A ``progress_callback`` for the upstream call that reports on the caller's request, or
    ``None`` when the caller did not ask for progress (the upstream then gets no progress token)."""
    if not _wants_progress(ctx):
        return None

    async def relay(progress: float, total: float | None, message: str | None) -> None:
        try:
            await ctx.report_progress(progress, total, message)
        except Exception as exc:  # the caller went away: the upstream call goes on
            logger.debug("progress relay failed: %s", type(exc).__name__)

    return relay


_DECLINE = ElicitResult(action="decline")


async def relay_elicitation(caller: Context | None, params: ElicitRequestParams) -> ElicitResult:
    """Ask ``caller`` the upstream's question; ``decline`` when it cannot be asked."""
    if caller is None:
        return _DECLINE
    request_context = caller._request_context  # pyright: ignore[reportPrivateUsage]
    if request_context is None:
        return _DECLINE
    session = request_context.session
    can_ask = (
        session.protocol_version not in MODERN_PROTOCOL_VERSIONS
        and session.can_send_request
        and session.check_client_capability(ClientCapabilities(elicitation=ElicitationCapability()))
    )
    if not can_ask:
        return _DECLINE
    try:
        return await session.send_request(
            ElicitRequest(params=params),
            ElicitResult,
            metadata=ServerMessageMetadata(related_request_id=request_context.request_id),
        )
    except Exception as exc:  # the caller refused or went away: the upstream hears decline
        logger.info("elicitation relay failed: %s", type(exc).__name__)
        return _DECLINE
