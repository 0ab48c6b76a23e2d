"""What the gateway answers besides calls: completions, log levels, resource subscriptions, tasks.

Installed on the gateway plane while its upstreams are open (:func:`install_handlers`), each only
when the plane has no handler of its own for the method (a local one wins):

* ``completion/complete``: a reference to an upstream's prompt (by its exposed name) or resource
  template (by its URI template) is asked of that upstream, under the upstream's own name;
  anything else goes to the plane's own completion handler, or completes to nothing;
* ``logging/setLevel`` (2025-11-25): remembered for the session; relayed log messages below it
  are dropped (:func:`mcplane.gateway.relay.set_log_level`);
* ``resources/subscribe`` / ``resources/unsubscribe`` (2025-11-25): the subscription is made on the
  upstream that serves the URI (the first caller's subscribe goes upstream, the last one's
  unsubscribe too); the upstream's ``notifications/resources/updated`` reaches every subscribed
  session, and ``subscriptions/listen`` streams (2026-07-28) that asked for the URI;
* both are also written to the session's state record (:mod:`mcplane.transports.session_state`,
  keys :data:`LOG_LEVEL_KEY` and :data:`SUBSCRIPTIONS_KEY`) and restored into its new
  ``Connection`` when the session is adopted again (dropped while idle, or continued on another
  replica); a restored URI no session here subscribed to yet is subscribed upstream again, as the
  gateway;
* ``tasks/*`` of upstream tasks: see :mod:`mcplane.gateway.tasks`;
* the **hot path** (:mod:`mcplane.fastpath`) keeps serving upstream tools, except for 2026-07-28
  requests that declare a capability an upstream could answer with an ``input_required`` round
  or a task (``elicitation``, ``sampling``, ``roots``, any extension) to a tool of an upstream
  that speaks 2026-07-28: those take the SDK path, which can carry either (and seals request state).
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

from mcp.server.context import ServerRequestContext
from mcp.server.subscriptions import ResourceUpdated
from mcp.shared.exceptions import MCPError
from mcp_types import (
    CLIENT_CAPABILITIES_META_KEY,
    INVALID_PARAMS,
    CompleteRequestParams,
    EmptyResult,
    SetLevelRequestParams,
    SubscribeRequestParams,
    UnsubscribeRequestParams,
)

from mcplane.gateway.forward import Caller, Request
from mcplane.gateway.relay import LOG_LEVELS, set_log_level
from mcplane.gateway.tasks import install_task_routing
from mcplane.sdk_adapter.mcpserver import local_tool, lowlevel_server, remove_request_handler, subscription_bus
from mcplane.transports.session_state import plane_session_state

if TYPE_CHECKING:
    from mcplane.app import Plane
    from mcplane.context import Context
    from mcplane.gateway.provider import UpstreamProvider
    from mcplane.gateway.upstream import Upstream

__all__ = ["LOG_LEVEL_KEY", "SUBSCRIPTIONS_KEY", "ResourceSubscriptions", "install_handlers"]

LOG_LEVEL_KEY = "gateway.logLevel"
"""The session state record's key for the level a 2025-11-25 session set (``logging/setLevel``)."""
SUBSCRIPTIONS_KEY = "gateway.subscriptions"
"""The session state record's key for the URIs a 2025-11-25 session subscribed to through the gateway."""

logger = logging.getLogger("mcplane.gateway")

_ASKING = ("elicitation", "sampling", "roots")
_EMPTY_COMPLETION = {"completion": {"values": [], "total": 0, "hasMore": False}}


class ResourceSubscriptions:
    """Which 2025-11-25 sessions subscribed to which URI through the gateway."""

    def __init__(self) -> None:
        self.plane: Plane | None = None
        self._sessions: dict[str, weakref.WeakSet[Any]] = {}

    def add(self, uri: str, connection: Any) -> bool:
        """Note a subscriber; whether it is the URI's first (the subscription goes upstream)."""
        sessions = self._sessions.setdefault(uri, weakref.WeakSet())
        first = not sessions
        sessions.add(connection)
        return first

    def uris_of(self, connection: Any) -> list[str]:
        """The URIs ``connection`` is subscribed to, sorted."""
        return sorted(uri for uri, sessions in self._sessions.items() if connection in sessions)

    def remove(self, uri: str, connection: Any) -> bool:
        """Forget a subscriber; whether it was the URI's last (the unsubscribe goes upstream)."""
        sessions = self._sessions.get(uri)
        if sessions is None or connection not in sessions:
            return False
        sessions.discard(connection)
        if sessions:
            return False
        del self._sessions[uri]
        return True

    async def updated(self, uri: str) -> None:
        """An upstream said ``uri`` changed: tell its subscribers, and the listen streams that asked."""
        for connection in list(self._sessions.get(uri, ())):
            try:
                await connection.send_resource_updated(uri)
            except Exception:  # a subscriber that went away
                continue
        if self.plane is not None:
            await subscription_bus(self.plane.sdk).publish(ResourceUpdated(uri=uri))


def install_handlers(plane: Plane, provider: UpstreamProvider) -> Callable[[], None]:
    """Install the handlers of the module doc on ``plane``; returns the undo."""
    lowlevel = lowlevel_server(plane.sdk)
    undo: list[Callable[[], None]] = []
    provider.subscriptions.plane = plane
    state = plane_session_state(plane)

    def add(method: str, params_type: type[Any], handler: Any) -> None:
        previous = lowlevel.get_request_handler(method)
        if previous is not None and method != "completion/complete":
            return  # the plane serves it itself
        lowlevel.add_request_handler(method, params_type, handler)

        def restore() -> None:
            if previous is not None:
                lowlevel.add_request_handler(method, previous.params_type, previous.handler)
            else:
                remove_request_handler(lowlevel, method)

        undo.append(restore)

    local_completion = lowlevel.get_request_handler("completion/complete")

    async def complete(ctx: ServerRequestContext[Any, Any], params: CompleteRequestParams) -> Any:
        target = provider.completion_target(params.ref)
        if target is None:
            if local_completion is not None:
                return await local_completion.handler(ctx, params)
            return _EMPTY_COMPLETION
        upstream, ref = target
        wire = params.model_dump(by_alias=True, mode="json", exclude_none=True, exclude={"meta"})
        wire["ref"] = ref
        request = Request("completion/complete", wire, what="completion/complete")
        return await _forward(plane, provider, upstream, request, ctx, params, retry=True)

    async def set_level(ctx: ServerRequestContext[Any, Any], params: SetLevelRequestParams) -> EmptyResult:
        connection = getattr(ctx.session, "_connection", None)
        if connection is not None:
            set_log_level(connection, params.level)
            await state.write(getattr(connection, "session_id", None), LOG_LEVEL_KEY, params.level)
        return EmptyResult()

    async def subscribe(ctx: ServerRequestContext[Any, Any], params: SubscribeRequestParams) -> Any:
        uri = str(params.uri)
        owner = provider.resource_owner(uri)
        if owner is None:
            raise MCPError(INVALID_PARAMS, "resource not found", {"uri": uri})
        connection = getattr(ctx.session, "_connection", None)
        if provider.subscriptions.add(uri, connection):
            request = Request("resources/subscribe", {"uri": uri}, what="resources/subscribe")
            try:
                await _forward(plane, provider, owner, request, ctx, params, retry=True)
            except BaseException:
                provider.subscriptions.remove(uri, connection)
                raise
        await _note_subscriptions(connection)
        return EmptyResult()

    async def unsubscribe(ctx: ServerRequestContext[Any, Any], params: UnsubscribeRequestParams) -> Any:
        uri = str(params.uri)
        owner = provider.resource_owner(uri)
        connection = getattr(ctx.session, "_connection", None)
        if provider.subscriptions.remove(uri, connection) and owner is not None:
            request = Request("resources/unsubscribe", {"uri": uri}, what="resources/unsubscribe")
            await _forward(plane, provider, owner, request, ctx, params, retry=True)
        await _note_subscriptions(connection)
        return EmptyResult()

    async def _note_subscriptions(connection: Any) -> None:
        uris = provider.subscriptions.uris_of(connection) if connection is not None else []
        await state.write(getattr(connection, "session_id", None), SUBSCRIPTIONS_KEY, uris or None)

    async def resubscribe(connection: Any, uris: list[str]) -> None:
        for uri in uris:  # as the gateway: the session's first subscribe went up with its caller
            owner = provider.resource_owner(uri)
            request = Request("resources/subscribe", {"uri": uri}, what="resources/subscribe")
            try:
                if owner is None:
                    raise LookupError(uri)
                await _forward(plane, provider, owner, request, None, SubscribeRequestParams(uri=uri), retry=True)
            except Exception as exc:
                logger.warning("could not restore a session's subscription to %s: %s", uri, type(exc).__name__)
                provider.subscriptions.remove(uri, connection)

    def restore(connection: Any, record: Mapping[str, Any]) -> Awaitable[None] | None:
        level = record.get(LOG_LEVEL_KEY)
        if level in LOG_LEVELS:
            set_log_level(connection, level)
        uris: Any = record.get(SUBSCRIPTIONS_KEY)
        if not isinstance(uris, list):
            return None
        upstream = [
            uri
            for uri in cast("list[Any]", uris)
            if isinstance(uri, str) and provider.subscriptions.add(uri, connection)  # the URI's first here
        ]
        return resubscribe(connection, upstream) if upstream else None

    state.restorers.append(restore)
    undo.append(lambda: state.restorers.remove(restore))

    add("completion/complete", CompleteRequestParams, complete)
    add("logging/setLevel", SetLevelRequestParams, set_level)
    add("resources/subscribe", SubscribeRequestParams, subscribe)
    add("resources/unsubscribe", UnsubscribeRequestParams, unsubscribe)
    undo.append(install_task_routing(plane, provider))
    undo.append(_guard_hot_path(plane, provider))

    def uninstall() -> None:
        for step in reversed(undo):
            step()

    return uninstall


async def _forward(
    plane: Plane,
    provider: UpstreamProvider,
    upstream: Upstream,
    request: Request,
    ctx: ServerRequestContext[Any, Any] | None,
    params: Any,
    *,
    retry: bool,
) -> Any:
    """``request`` to ``upstream`` for the caller of ``ctx``, bounded by the upstream's timeout (else the plane's)."""
    context = _context(plane, provider, ctx, params, upstream)
    return await provider.forward(upstream, request, Caller.of(context), retry=retry)


def _context(
    plane: Plane,
    provider: UpstreamProvider,
    ctx: ServerRequestContext[Any, Any] | None,
    params: Any,
    upstream: Upstream,
) -> Context:
    context = plane.make_context(ctx, params)
    timeout = upstream.config.timeout or provider.default_timeout
    caller = context.incoming_timeout()
    bounds = [bound for bound in (timeout, caller) if bound is not None]
    if bounds:
        context = context.replace(deadline=time.monotonic() + min(bounds))
    return context


def _guard_hot_path(plane: Plane, provider: UpstreamProvider) -> Callable[[], None]:
    """Keep 2026-07-28 requests that could be answered ``input_required`` or with a task off the hot path."""
    fast = plane.fast
    original = fast.match

    def match(
        message: Any,
        *,
        modern: bool,
        headers: Mapping[str, str] | None = None,
        session: str | None = None,
    ) -> str | None:
        version = original(message, modern=modern, headers=headers, session=session)
        if version is None or not modern:
            return version
        params = cast("dict[str, Any]", message["params"])
        meta: Any = params.get("_meta") or {}
        declared: Any = meta.get(CLIENT_CAPABILITIES_META_KEY) if isinstance(meta, dict) else None
        if not isinstance(declared, dict):
            return version
        capabilities = cast("dict[str, Any]", declared)
        if not capabilities.get("extensions") and all(capabilities.get(name) is None for name in _ASKING):
            return version
        name: str = params["name"]
        if local_tool(plane.sdk, name) is not None:  # a local tool
            return version
        return None if provider.may_ask(name) else version

    fast.match = match  # pyright: ignore[reportAttributeAccessIssue]

    def restore() -> None:
        if fast.__dict__.get("match") is match:
            del fast.__dict__["match"]

    return restore
