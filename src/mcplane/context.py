"""The per-call context a tool, resource or prompt can ask for.

A function receives it by declaring a parameter annotated with :class:`Context`. It is the
official SDK's context (progress, logging, elicitation, resource reads, list-changed
notifications) plus what mcplane adds: the principal, the correlation id, the call's deadline
and the dependencies opened by the plane's lifespan.

A context never changes once made: a layer that learns who calls or until when the call may run
makes a new one with :meth:`Context.replace` and hands it on in the call
(``call.context = call.context.replace(deadline=...)``), so what a tool was given cannot be
changed behind its back by a layer, and no layer can write another's fields by accident.
"""

from __future__ import annotations

import enum
import logging
import os
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from mcp.server.mcpserver.context import Context as _SDKContext
from mcp_types import LoggingLevel
from opentelemetry.trace import get_current_span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from mcplane.sdk_adapter.context import private_state, request_context_of
from mcplane.tasks.scope import current_scope

if TYPE_CHECKING:
    from mcplane.backends.state import State

__all__ = ["ANONYMOUS", "KEEP", "Context", "Keep", "Principal", "new_correlation_id"]

logger = logging.getLogger("mcplane.context")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: filled by the authentication layer, read by every later layer."""

    subject: str
    roles: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()
    tenant: str | None = None
    claims: Mapping[str, Any] = field(default_factory=dict)

    @property
    def anonymous(self) -> bool:
        return self.subject == ANONYMOUS.subject


ANONYMOUS = Principal(subject="anonymous")

TIMEOUT_META_KEY = "mcplane/timeout_ms"
"""``_meta`` key carrying the caller's remaining time in milliseconds."""
TIMEOUT_HEADER = b"mcplane-timeout-ms"
"""HTTP header (lower-case) carrying the caller's remaining time in milliseconds."""
_W3C = TraceContextTextMapPropagator()
_set = object.__setattr__

_ID_BATCH = 256
_correlation_ids: deque[str] = deque()
os.register_at_fork(after_in_child=_correlation_ids.clear)  # a forked worker never reuses its parent's


def new_correlation_id() -> str:
    """16 random hex digits, as ``secrets.token_hex(8)``: drawn from ``os.urandom`` 256 at a time
    (one system call per batch, not per call; ``deque.popleft`` hands each out once across threads)."""
    try:
        return _correlation_ids.popleft()
    except IndexError:
        raw = os.urandom(8 * _ID_BATCH).hex()
        _correlation_ids.extend(raw[start : start + 16] for start in range(16, len(raw), 16))
        return raw[:16]


class Keep(enum.Enum):
    """The type of :data:`KEEP`: a field :meth:`Context.replace` leaves as it is."""

    KEEP = "keep"


KEEP = Keep.KEEP


class Context(_SDKContext[Any, Any]):
    """Per-call context: principal, session, deadline, progress, logging, cancellation.

    Progress and logging are the SDK's: ``await ctx.report_progress(1, 10)``,
    ``await ctx.info("...")``. Cancellation arrives as ordinary task cancellation
    (``anyio.get_cancelled_exc_class()``) when the client cancels or the deadline passes.

    A call of a task-capable tool (``@plane.tool(task=...)``) may become a task: then
    ``task_id`` is set, progress updates the task's ``statusMessage`` and log messages are
    dropped (nobody reads the answered call's stream any more).
    """

    # mcplane's own per-call state lives in slots: reads are plain descriptor lookups (declared
    # pydantic private attributes go through pydantic's ``__getattr__`` fallback, ~25x slower,
    # and the pipeline reads these on every call), writes bypass pydantic's ``__setattr__``, and
    # ``__setattr__`` below refuses them from outside this module: a context changes only
    # through :meth:`replace`, which returns a new one.
    __slots__ = (
        "_correlation_id",
        "_deadline",
        "_dependencies",
        "_headers",
        "_meta",
        "_principal",
        "_scope",
        "_session_id",
        "_state",
    )
    if TYPE_CHECKING:
        _principal: Principal
        _correlation_id: str
        _deadline: float | None
        _dependencies: Mapping[str, Any]
        _scope: Mapping[str, Any] | None
        _meta: Mapping[str, Any] | None
        _session_id: str | None
        _headers: Mapping[str, str] | None
        _state: State | None

    def __init__(
        self,
        *,
        principal: Principal = ANONYMOUS,
        correlation_id: str = "",
        deadline: float | None = None,
        dependencies: Mapping[str, Any] | None = None,
        scope: Mapping[str, Any] | None = None,
        meta: Mapping[str, Any] | None = None,
        session_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        _set(self, "_principal", principal)
        _set(self, "_correlation_id", correlation_id)
        _set(self, "_deadline", deadline)
        _set(self, "_dependencies", dependencies or {})
        _set(self, "_scope", scope)
        _set(self, "_meta", meta)
        _set(self, "_session_id", session_id)
        _set(self, "_headers", None)
        _set(self, "_state", None)

    @classmethod
    def for_call(
        cls,
        *,
        request_context: Any,
        mcp_server: Any,
        input_params: Any,
        subscriptions: Any,
        principal: Principal,
        correlation_id: str,
        dependencies: Mapping[str, Any],
        scope: Mapping[str, Any] | None,
        meta: Mapping[str, Any] | None,
        session_id: str | None,
    ) -> Context:
        """What ``Context(...)`` with these arguments makes, without pydantic's validation round.

        The plane makes one per call; the SDK's model has no fields, so its ``__init__`` only
        validates nothing and sets the private request state, which this sets directly.
        """
        new = cls.__new__(cls)
        _set(new, "__pydantic_extra__", None)
        _set(new, "__pydantic_fields_set__", set())
        _set(new, "__pydantic_private__", private_state(request_context, mcp_server, input_params, subscriptions))
        _set(new, "_principal", principal)
        _set(new, "_correlation_id", correlation_id)
        _set(new, "_deadline", None)
        _set(new, "_dependencies", dependencies)
        _set(new, "_scope", scope)
        _set(new, "_meta", meta)
        _set(new, "_session_id", session_id)
        _set(new, "_headers", None)
        _set(new, "_state", None)
        return new

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _OWN_FIELDS:
            public = name.lstrip("_")
            raise AttributeError(f"Context.{public} is read-only: use ctx.replace({public}=...) for a changed context")
        super().__setattr__(name, value)

    def replace(
        self,
        *,
        principal: Principal | Keep = KEEP,
        correlation_id: str | Keep = KEEP,
        deadline: float | Keep | None = KEEP,
        dependencies: Mapping[str, Any] | Keep = KEEP,
        scope: Mapping[str, Any] | Keep | None = KEEP,
        meta: Mapping[str, Any] | Keep | None = KEEP,
        session_id: str | Keep | None = KEEP,
        state: State | Keep = KEEP,
    ) -> Context:
        """A new context of the same request with the given fields changed; this one is untouched.

        The session state bound to this context carries over unless the principal, session,
        ``_meta`` or scope changes (the state is keyed by them), or ``state`` binds another.
        """
        cls = type(self)
        new = cls.__new__(cls)  # pydantic's ``__copy__``, minus its generality (3x faster)
        if self.__dict__:  # a subclass's own attributes
            _set(new, "__dict__", self.__dict__.copy())
        _set(new, "__pydantic_extra__", None)
        _set(new, "__pydantic_fields_set__", set())
        private = self.__pydantic_private__
        _set(new, "__pydantic_private__", None if private is None else private.copy())  # the SDK's request state
        keep = Keep.KEEP
        _set(new, "_principal", self._principal if principal is keep else principal)
        _set(new, "_correlation_id", self._correlation_id if correlation_id is keep else correlation_id)
        _set(new, "_deadline", self._deadline if deadline is keep else deadline)
        _set(new, "_dependencies", self._dependencies if dependencies is keep else dependencies)
        _set(new, "_scope", self._scope if scope is keep else scope)
        _set(new, "_meta", self._meta if meta is keep else meta)
        _set(new, "_session_id", self._session_id if session_id is keep else session_id)
        _set(new, "_headers", self._headers if scope is keep else None)
        same_owner = principal is keep and session_id is keep and meta is keep and scope is keep
        _set(new, "_state", state if state is not keep else self._state if same_owner else None)
        return new

    @property
    def principal(self) -> Principal:
        """The authenticated caller (``ANONYMOUS`` when no authentication is configured)."""
        return self._principal

    @property
    def correlation_id(self) -> str:
        """The id that ties this call's logs, audit record and any error together."""
        return self._correlation_id

    @property
    def session_id(self) -> str | None:
        """The transport session id for 2025-11-25 clients over HTTP; ``None`` when stateless."""
        if self._session_id is not None:
            return self._session_id
        request_context = request_context_of(self)
        if request_context is None:
            return None
        return request_context.session._connection.session_id

    @property
    def scope(self) -> Mapping[str, Any] | None:
        """The ASGI scope of the HTTP request or WebSocket connection that carried the call, if any."""
        if self._scope is None and (request_context := request_context_of(self)) is not None:
            scope = getattr(request_context.request, "scope", None)
            if isinstance(scope, Mapping):
                _set(self, "_scope", cast("Mapping[str, Any]", scope))
        return self._scope

    @property
    def headers(self) -> Mapping[str, str] | None:
        """The HTTP request (or WebSocket handshake) headers, lower-cased; ``None`` on stdio."""
        if self._headers is None:
            scope = self.scope
            if scope is not None:
                _set(self, "_headers", {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", ())})
            elif request_context_of(self) is not None:
                _set(self, "_headers", super().headers)
        return self._headers

    @property
    def request_meta(self) -> Mapping[str, Any]:
        """The request's ``_meta`` (trace context, deadline, protocol envelope); empty when absent."""
        if self._meta is None:
            meta: Any = None
            request_context = request_context_of(self)
            if request_context is not None and request_context.meta is not None:
                meta = request_context.meta
            _set(self, "_meta", meta if isinstance(meta, Mapping) else {})
        assert self._meta is not None
        return self._meta

    @property
    def state(self) -> State:
        """This conversation's session state, shared by every replica (see :mod:`mcplane.backends.state`).

        Keyed by the client's ``_meta["mcplane/conversation"]``, else the 2025-11-25 session id,
        and by the principal. Bound on first use, so calls that never touch it pay nothing.
        """
        state = self._state
        if state is None:
            from mcplane.backends.state import bind_state

            state = bind_state(self)
            _set(self, "_state", state)
        return state

    @property
    def deadline(self) -> float | None:
        """Absolute deadline on the ``time.monotonic()`` clock, or ``None`` when unbounded."""
        return self._deadline

    def incoming_timeout(self) -> float | None:
        """Seconds the caller said it will wait (``_meta`` ``mcplane/timeout_ms``, else the
        ``Mcplane-Timeout-Ms`` header); ``None`` when it said nothing or nonsense."""
        raw: Any = self.request_meta.get(TIMEOUT_META_KEY)
        if raw is None:
            scope = self.scope
            if scope is not None:
                for key, value in scope.get("headers", ()):
                    if key == TIMEOUT_HEADER:
                        raw = value.decode("latin-1")
                        break
        if raw is None or isinstance(raw, bool):
            return None
        try:
            millis = float(raw)
        except (TypeError, ValueError):
            return None
        if millis != millis or millis < 0:  # NaN or negative
            return None
        return millis / 1000.0

    def propagation_meta(self) -> dict[str, Any]:
        """``_meta`` entries for a call this one makes onward: the time left and the trace context.

        The trace context is the *current* span's (``traceparent``/``tracestate``), so the next
        hop becomes its child; with no span (tracing off), the caller's context is passed on as it came.
        """
        meta: dict[str, Any] = {}
        remaining = self.remaining()
        if remaining is not None:
            meta[TIMEOUT_META_KEY] = int(remaining * 1000)
        if get_current_span().get_span_context().is_valid:
            _W3C.inject(meta)
            return meta
        for key in ("traceparent", "tracestate"):
            if (value := self.request_meta.get(key)) is not None:
                meta[key] = value
        return meta

    def remaining(self) -> float | None:
        """Seconds left before the deadline (never negative), or ``None`` when unbounded."""
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - time.monotonic())

    @property
    def task_id(self) -> str | None:
        """The id of the task this call runs as, or ``None`` while it answers its caller directly."""
        scope = current_scope.get()
        return scope.task_id if scope is not None else None

    async def start_task(self) -> str | None:
        """Answer the caller with a task now; the rest of this call runs as that task.

        Returns the task id, or ``None`` when the call cannot become a task (the tool was not
        registered with ``task=``, or the client did not declare the tasks extension).
        """
        scope = current_scope.get()
        return await scope.start_task() if scope is not None else None

    async def report_progress(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        scope = current_scope.get()
        if scope is not None and scope.detached:
            await scope.progress(progress, total, message)
            return
        await super().report_progress(progress, total, message)

    async def log(self, level: LoggingLevel, data: Any, *, logger_name: str | None = None) -> None:
        scope = current_scope.get()
        if scope is not None and scope.detached:
            logger.debug("dropped a %s log message from task %s: tasks carry no log messages", level, scope.task_id)
            return
        await super().log(level, data, logger_name=logger_name)  # pyright: ignore[reportDeprecated]

    def dependency(self, name: str) -> Any:
        """A lifespan dependency by name (the same object tools receive through :func:`Inject`)."""
        try:
            return self._dependencies[name]
        except KeyError:
            raise LookupError(f"no dependency named {name!r} is open") from None


_OWN_FIELDS = frozenset(Context.__slots__)
