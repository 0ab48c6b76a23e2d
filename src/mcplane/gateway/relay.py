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
* **questions**: an upstream's ``elicitation/create``, ``sampling/createMessage`` or ``roots/list``
  during a call is asked of that call's caller (:func:`relay_elicitation`, :func:`relay_sampling`,
  :func:`relay_roots`) and its answer returned; when the caller cannot be asked (no back channel,
  no such capability, a 2026-07-28 caller, or no single caller to ask), the upstream gets
  ``decline`` (elicitation) or an error (sampling, roots), as from a client without the
  capability. The caller is the one whose task sent the call (Streamable HTTP upstreams and
  2026-07-28 input-required rounds run the question in that task); over a stdio or WebSocket
  legacy session, which carries no link from question to call, it is the endpoint's only call in
  flight, and with several in flight the question is refused.
* **stream polling**: an upstream that closes a call's event stream before answering (SEP-1699)
  is resumed; the caller's stream is closed too (:func:`relay_stream_closed`), so the caller polls
  the gateway as it would poll the upstream.
* **log messages**: an upstream's ``notifications/message`` during a call becomes a log message on
  the caller's request (:func:`relay_log`): for a 2026-07-28 caller only when its request opted in
  (``_meta`` ``io.modelcontextprotocol/logLevel``, passed upstream as it came) and at or above that
  level; for a 2025-11-25 session at or above the level it set with ``logging/setLevel``
  (:func:`set_log_level`; everything until it sets one). The level is kept per ``Connection`` here;
  :mod:`mcplane.gateway.handlers` also keeps it in the session's state record, so a session adopted
  again (dropped while idle, or on another replica) gets it back.
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
from mcp_types import (
    INVALID_REQUEST,
    PROTOCOL_VERSION_META_KEY,
    ClientCapabilities,
    CreateMessageRequest,
    CreateMessageRequestParams,
    CreateMessageResult,
    ElicitationCapability,
    ElicitRequest,
    ElicitRequestParams,
    ElicitResult,
    ErrorData,
    ListRootsRequest,
    ListRootsResult,
    LoggingLevel,
    LoggingMessageNotificationParams,
    RootsCapability,
    SamplingCapability,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from mcplane.sdk_adapter.context import request_context_of
from mcplane.sdk_adapter.mcpserver import subscription_bus

if TYPE_CHECKING:
    from mcplane.app import Plane
    from mcplane.context import Context

__all__ = [
    "LOG_LEVELS",
    "ListChangedRelay",
    "caller_is_modern",
    "current_caller",
    "progress_relay",
    "relay_elicitation",
    "relay_log",
    "relay_roots",
    "relay_sampling",
    "relay_stream_closed",
    "set_log_level",
]

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

    def adopted(self, connection: Any, record: Any) -> None:
        """A session restorer (:mod:`mcplane.transports.session_state`): a 2025-11-25 session adopted
        here (dropped while idle, or opened on another replica) is known as if it had initialized
        here: it hears list changes, and its calls may take the hot path."""
        session_id = getattr(connection, "session_id", None)
        if getattr(connection, "client_params", None) is None or not isinstance(session_id, str):
            return
        if connection.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            self._sessions[session_id] = connection
            self._connections.add(connection)

    def hot_path_caller(self, session_id: str) -> bool:
        """Whether upstream tool calls of this 2025-11-25 session may skip the SDK's dispatch: only
        when its client cannot be asked an upstream's question (no elicitation, sampling or roots
        capability) and never asked for log messages (``logging/setLevel``), since relaying either
        needs the SDK's request context. Unknown sessions are refused."""
        connection = self._sessions.get(session_id)
        if connection is None or connection in _log_levels:
            return False
        capabilities = getattr(connection, "client_capabilities", None)
        return capabilities is not None and all(
            getattr(capabilities, name, None) is None for name in ("elicitation", "sampling", "roots")
        )

    @property
    def connections(self) -> int:
        return len(self._connections)

    async def changed(self, kinds: Iterable[str]) -> None:
        """``kinds``: ``tools``, ``resources``, ``prompts`` (what changed)."""
        kinds = set(kinds)
        if not kinds:
            return
        bus = subscription_bus(self._plane.sdk)
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
    request_context = request_context_of(ctx)
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


def caller_is_modern(ctx: Context) -> bool:
    """Whether the call came in a 2026-07-28 request (else from a 2025-11-25 session)."""
    request_context = request_context_of(ctx)
    if request_context is not None:
        return request_context.protocol_version in MODERN_PROTOCOL_VERSIONS
    return ctx.request_meta.get(PROTOCOL_VERSION_META_KEY) in MODERN_PROTOCOL_VERSIONS  # the hot path's envelope


_DECLINE = ElicitResult(action="decline")
_NO_SAMPLING = ErrorData(code=INVALID_REQUEST, message="Sampling not supported")
_NO_ROOTS = ErrorData(code=INVALID_REQUEST, message="List roots not supported")


async def _ask(caller: Context | None, capability: ClientCapabilities, request: Any, result_type: type[Any]) -> Any:
    """Send ``request`` to ``caller``'s 2025-11-25 session; ``None`` when it cannot be asked or failed."""
    if caller is None:
        return None
    request_context = request_context_of(caller)
    if request_context is None:
        return None
    session = request_context.session
    can_ask = (
        session.protocol_version not in MODERN_PROTOCOL_VERSIONS
        and session.can_send_request
        and session.check_client_capability(capability)
    )
    if not can_ask:
        return None
    try:
        return await session.send_request(
            request, result_type, metadata=ServerMessageMetadata(related_request_id=request_context.request_id)
        )
    except Exception as exc:  # the caller refused or went away: the upstream hears a refusal
        logger.info("%s relay failed: %s", request.method, type(exc).__name__)
        return None


async def relay_elicitation(caller: Context | None, params: ElicitRequestParams) -> ElicitResult:
    """Ask ``caller`` the upstream's question; ``decline`` when it cannot be asked."""
    capability = ClientCapabilities(elicitation=ElicitationCapability())
    answer = await _ask(caller, capability, ElicitRequest(params=params), ElicitResult)
    return answer if answer is not None else _DECLINE


async def relay_sampling(caller: Context | None, params: CreateMessageRequestParams) -> CreateMessageResult | ErrorData:
    """Ask ``caller``'s model for the upstream (``sampling/createMessage``); an error when it cannot be asked."""
    capability = ClientCapabilities(sampling=SamplingCapability())
    answer = await _ask(caller, capability, CreateMessageRequest(params=params), CreateMessageResult)
    return answer if answer is not None else _NO_SAMPLING


async def relay_roots(caller: Context | None) -> ListRootsResult | ErrorData:
    """The caller's roots for the upstream (``roots/list``); an error when it cannot be asked."""
    answer = await _ask(caller, ClientCapabilities(roots=RootsCapability()), ListRootsRequest(), ListRootsResult)
    return answer if answer is not None else _NO_ROOTS


async def relay_stream_closed(caller: Context | None) -> None:
    """The upstream closed the call's event stream to be polled (SEP-1699): close the caller's too,
    so it resumes from the gateway as it would from the upstream (a 2025-11-25 request over HTTP)."""
    if caller is None or request_context_of(caller) is None:
        return
    try:
        await caller.close_sse_stream()
    except Exception as exc:  # nothing to close (stdio, a JSON answer): the call goes on
        logger.debug("stream close relay failed: %s", type(exc).__name__)


# ----------------------------------------------------------------- log messages
LOG_LEVELS: tuple[LoggingLevel, ...] = (
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
)
"""The log levels, lowest first."""
_log_levels: weakref.WeakKeyDictionary[Any, LoggingLevel] = weakref.WeakKeyDictionary()
"""The level each 2025-11-25 connection set with ``logging/setLevel`` (forgotten with the connection)."""


def set_log_level(connection: Any, level: LoggingLevel) -> None:
    """Remember a 2025-11-25 session's ``logging/setLevel``: its relayed log messages below it are dropped."""
    _log_levels[connection] = level


async def relay_log(caller: Context | None, params: LoggingMessageNotificationParams) -> None:
    """An upstream's log message during ``caller``'s call, as a log message on the caller's request."""
    if caller is None:
        return
    request_context = request_context_of(caller)
    if request_context is None:  # the hot path answers with one JSON body: nowhere to put it
        return
    connection = getattr(request_context.session, "_connection", None)
    floor = _log_levels.get(connection) if connection is not None else None
    if floor is not None and LOG_LEVELS.index(params.level) < LOG_LEVELS.index(floor):
        return
    try:  # a 2026-07-28 request's own opt-in gates it in the SDK's session
        await caller.log(params.level, params.data, logger_name=params.logger)
    except Exception as exc:  # the caller went away: the upstream call goes on
        logger.debug("log relay failed: %s", type(exc).__name__)
