"""The hot path: ``tools/call`` of a plain local tool, answered without the SDK's per-message machinery.

The official SDK's dispatch (Starlette request objects, pydantic validation of every JSON-RPC
envelope, the SSE deferral window, the stream loop of a session) costs far more than a typical
tool. mcplane answers the common case itself — a well-formed ``tools/call`` of a tool that does
not ask for the SDK's request context — and leaves everything else to the SDK, byte for byte:

* the request is validated with the SDK's own inbound ladder (``classify_inbound_request``), so
  what the fast path accepts is exactly what the SDK would accept;
* the call still runs through mcplane's whole pipeline (errors, auth, limits, audit, ...);
* the result is shaped by the SDK's per-version result sieve, plus the ``serverInfo`` stamp and
  ``resultType`` on 2026-07-28, as the SDK's runner does.

Anything unusual (progress tokens, log-level opt-in, multi-round-trip input, tasks, extra
params, a tool that takes a ``Context`` or can return ``input_required``) falls back to the SDK.

A provider's tool (a gateway upstream's) qualifies too, unless its input schema maps arguments to
``Mcp-Param`` headers. On a 2025-11-25 session it qualifies only when :attr:`FastPath.legacy_caller`
says so for that session (the gateway refuses sessions that could answer an upstream's question,
which only the SDK's request context can relay).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult

from mcplane.context import ANONYMOUS, Principal
from mcplane.pipeline import Call
from mcplane.sdk_adapter.eligibility import (
    LATEST_HANDSHAKE_VERSION,
    PROTOCOL_VERSION_KEY,
    SDK_BUILTIN_MIDDLEWARE,
    header_mapped,
    modern_version,
    tool_qualifies,
)
from mcplane.sdk_adapter.mcpserver import local_tool
from mcplane.sdk_adapter.results import error_response, other_tool_result, tool_result

if TYPE_CHECKING:
    from mcplane.app import Plane

__all__ = ["FastPath"]

_ALLOWED_PARAMS = frozenset({"name", "arguments", "_meta"})
_ALLOWED_META = frozenset(
    {
        PROTOCOL_VERSION_KEY,
        "io.modelcontextprotocol/clientCapabilities",
        "io.modelcontextprotocol/clientInfo",
        "traceparent",
        "tracestate",
        "mcplane/timeout_ms",
    }
)


class FastPath:
    """Decides whether a request may take the hot path, and serves it."""

    def __init__(self, plane: Plane) -> None:
        self.plane = plane
        self._eligible: dict[str, bool | None] = {}
        self._transparent: list[Any] = []
        self.served = 0
        """Calls answered on the hot path (a plain counter; metrics read it)."""
        self.legacy_caller: Callable[[str], bool] | None = None
        """Whether a provider's tool may be served on the hot path for this 2025-11-25 session id
        (``None``: never; the gateway sets it)."""

    @property
    def enabled(self) -> bool:
        """Off when someone added SDK-level middleware: it must see every message.

        Middleware registered with :meth:`transparent` (it has nothing to do with ``tools/call``)
        does not count.
        """
        middleware = self.plane.sdk.middleware
        return all(type(m) in SDK_BUILTIN_MIDDLEWARE or m in self._transparent for m in middleware)

    def transparent(self, middleware: Any) -> None:
        """Declare an SDK-level middleware that never needs to see a ``tools/call`` (idempotent)."""
        if middleware not in self._transparent:
            self._transparent.append(middleware)

    def opaque(self, middleware: Any) -> None:
        """Undo :meth:`transparent`."""
        if middleware in self._transparent:
            self._transparent.remove(middleware)

    def tool_eligible(self, name: str, *, session: str | None = None, modern: bool = True) -> bool:
        """Whether ``name`` may be called on the hot path (for a 2025-11-25 ``session``, if not ``modern``)."""
        try:
            known = self._eligible[name]
        except KeyError:
            known = self._eligible[name] = self._decide(name)
        if known is not None:
            return known
        # No local tool: a provider's, decided per call (catalogs change while serving).
        if not modern and (session is None or self.legacy_caller is None or not self.legacy_caller(session)):
            return False
        return self._provider_eligible(name)

    def _provider_eligible(self, name: str) -> bool:
        plane = self.plane
        for provider in plane.providers:
            if provider.owns("tool", name):
                source = provider.source(name)
                if source is not None and header_mapped(source.json_schema):
                    return False
                return plane.policy_for(name).task is None and not plane.source_for(name).hand_written_schema
        return False

    def _decide(self, name: str) -> bool | None:
        """A local tool's verdict; ``None`` when there is no local tool of that name."""
        tool = local_tool(self.plane.sdk, name)
        if tool is None:
            return None
        if not tool_qualifies(tool):
            return False
        return self.plane.policy_for(name).task is None and not self.plane.source_for(name).hand_written_schema

    def forget(self, name: str) -> None:
        """Drop a cached decision (after a tool is added, replaced or removed)."""
        self._eligible.pop(name, None)

    def match(
        self,
        message: Any,
        *,
        modern: bool,
        headers: Mapping[str, str] | None = None,
        session: str | None = None,
    ) -> str | None:
        """The protocol version to serve ``message`` at on the hot path, or ``None`` to use the SDK.

        ``modern`` says which era the connection (or HTTP request) is in; for HTTP the routing
        headers are checked by the SDK's ladder, for streams there are none. ``session`` is the
        2025-11-25 session id, where there is one.
        """
        if not isinstance(message, dict) or message.get("method") != "tools/call" or message.get("jsonrpc") != "2.0":
            return None
        request_id = message.get("id")
        if not isinstance(request_id, str | int) or isinstance(request_id, bool):
            return None
        params = message.get("params")
        if not isinstance(params, dict) or not params.keys() <= _ALLOWED_PARAMS:
            return None
        name = params.get("name")
        arguments = params.get("arguments", {})
        if not isinstance(name, str) or not isinstance(arguments, dict):
            return None
        meta = params.get("_meta")
        if meta is not None and (not isinstance(meta, dict) or not meta.keys() <= _ALLOWED_META):
            return None
        if not self.tool_eligible(name, session=session, modern=modern) or not self.enabled:
            return None
        if modern:
            if meta is None:
                return None
            return modern_version(message, headers)
        if meta is not None and PROTOCOL_VERSION_KEY in meta:
            return None
        return LATEST_HANDSHAKE_VERSION

    async def serve(
        self,
        message: dict[str, Any],
        version: str,
        *,
        principal: Principal = ANONYMOUS,
        scope: Mapping[str, Any] | None = None,
        session_id: str | None = None,
    ) -> dict[str, Any]:
        """Run a matched ``tools/call`` through the pipeline; returns the JSON-RPC response object."""
        self.served += 1
        request_id = message["id"]
        params = message["params"]
        name: str = params["name"]
        plane = self.plane
        meta = params.get("_meta")
        context = plane.make_context(
            None, None, scope=scope, meta=meta or {}, session_id=session_id, principal=principal
        )
        try:
            result = await plane.dispatch(
                Call(
                    "tool", name, params.get("arguments") or {}, context, plane.policy_for(name), plane.source_for(name)
                )
            )
            if isinstance(result, CallToolResult):
                shaped = tool_result(result, version, plane.sdk)
            else:  # only a middleware returns something else: shaped, or refused, as the SDK would
                shaped = other_tool_result(result, version, plane.sdk)
        except MCPError as exc:
            return error_response(request_id, exc.error)
        return {"jsonrpc": "2.0", "id": request_id, "result": shaped}
