"""What one audit record says about a call, read from the :class:`~mcplane.pipeline.Call`.

Where the request facts come from (``call.context`` is an :class:`mcplane.Context`):

- **client IP**: the HTTP request the SDK attaches to the request context
  (``context.request_context.request``, a Starlette ``Request`` on Streamable HTTP): its
  ``client.host`` (the ASGI ``scope["client"]``, which the ASGI server may already have taken
  from proxy headers: uvicorn does for peers in ``forwarded_allow_ips``, 127.0.0.1 by default).
  With ``trust_forwarded=True`` the first ``X-Forwarded-For`` address wins (only behind a proxy
  you run). Empty on stdio and WebSocket, whose requests carry no HTTP request.
- **user agent**: the ``User-Agent`` request header (``context.headers``), capped at 256 chars.
- **trace id**: the W3C ``traceparent`` header, else ``traceparent`` in the request's ``_meta``;
  only the 32-hex trace id is kept, and only when the value is well formed; else empty.
- **principal**: ``context.principal`` (subject, tenant), set by the authenticate slot.

Arguments and results are never stored: only SHA-256 of their canonical JSON.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult

from mcplane.audit.chain import canonical, sha256_hex
from mcplane.errors import MCPlaneError, error_object_of
from mcplane.middleware.errors import to_mcplane_error

if TYPE_CHECKING:
    from mcplane.context import Context
    from mcplane.pipeline import Call

__all__ = ["RequestFacts", "call_entry", "error_code_of", "request_facts", "result_code", "utc_now"]

_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
_MAX_TEXT = 256
_MAX_SESSION = 1024
"""Sealed session ids (any replica can continue them) are a few hundred characters: kept whole."""


def utc_now() -> str:
    """UTC ISO 8601 with milliseconds: ``2026-05-01T12:00:00.123Z``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _header(headers: Mapping[str, str] | None, name: str) -> str:
    if not headers:
        return ""
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return "" if value is None else str(value)[:_MAX_TEXT]


def _trace_id(value: Any) -> str:
    if not isinstance(value, str):
        return ""
    match = _TRACEPARENT.match(value.strip().lower())
    return match.group(1) if match and match.group(1) != "0" * 32 else ""


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """Client IP, user agent, trace id and session id of the request behind a call."""

    client_ip: str = ""
    user_agent: str = ""
    trace_id: str = ""
    session_id: str = ""


_FACT_HEADERS = (b"x-forwarded-for", b"traceparent", b"user-agent")


def _scope_headers(scope: Mapping[str, Any]) -> dict[str, str]:
    """The three headers a record uses, read in one pass over the scope's raw headers (where
    ``context.headers`` comes from), by lower-case name: an exact lower-case name wins over another
    spelling, the last copy over earlier ones. Cheaper than ``context.headers`` plus three lookups."""
    exact: dict[str, str] = {}
    loose: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", ()):
        if raw_name in _FACT_HEADERS:
            exact[raw_name.decode("latin-1")] = raw_value.decode("latin-1")
        elif raw_name.lower() in _FACT_HEADERS:
            loose[raw_name.lower().decode("latin-1")] = raw_value.decode("latin-1")
    return {**loose, **exact} if loose else exact


def request_facts(context: Context, *, trust_forwarded: bool = False) -> RequestFacts:
    scope = context.scope
    if scope is not None:
        found = _scope_headers(scope)

        def header(name: str) -> str:
            return found.get(name, "")[:_MAX_TEXT]

    else:
        headers = context.headers
        if headers is None:
            return RequestFacts(session_id=str(context.session_id or "")[:_MAX_SESSION])

        def header(name: str) -> str:
            return _header(headers, name)

    client_ip = ""
    if trust_forwarded:
        client_ip = header("x-forwarded-for").split(",")[0].strip()
    if not client_ip and scope is not None:
        peer = scope.get("client")
        host = peer[0] if isinstance(peer, list | tuple) and peer else None
        client_ip = str(host)[:_MAX_TEXT] if host else ""
    trace = _trace_id(header("traceparent"))
    if not trace:
        trace = _trace_id(context.request_meta.get("traceparent"))
    session_id = context.session_id or ""
    return RequestFacts(client_ip, header("user-agent"), trace, str(session_id)[:_MAX_SESSION])


def call_entry(call: Call, call_id: str, facts: RequestFacts) -> dict[str, Any]:
    """The fields shared by a call's ``pending`` record and its outcome record."""
    principal = call.context.principal
    return {
        "call_id": call_id,
        "subject": principal.subject,
        "tenant": principal.tenant,
        "kind": call.kind,
        "name": call.name,
        "args_sha256": sha256_hex(canonical(dict(call.arguments))),
        "client_ip": facts.client_ip,
        "user_agent": facts.user_agent,
        "trace_id": facts.trace_id,
        "correlation_id": call.context.correlation_id,
        "session_id": facts.session_id,
    }


def result_code(result: Any) -> str | None:
    """The error code of a tool result with ``isError: true`` (``tool_error`` if it has none)."""
    if not isinstance(result, CallToolResult) or not result.is_error:
        return None
    error = error_object_of(result)
    code = error.get("code") if error is not None else None
    return str(code)[:_MAX_TEXT] if isinstance(code, str) and code else "tool_error"


def error_code_of(exc: BaseException) -> str:
    """The stable code of a raised exception, as the errors slot will answer it."""
    if isinstance(exc, anyio.get_cancelled_exc_class()):
        return "cancelled"
    if isinstance(exc, MCPlaneError):
        return exc.code
    if isinstance(exc, MCPError):
        data = exc.data
        code = data.get("code") if isinstance(data, Mapping) else None
        return str(code)[:_MAX_TEXT] if isinstance(code, str) and code else "protocol_error"
    if isinstance(exc, Exception):
        mapped = to_mcplane_error(exc)
        return mapped.code if mapped is not None else "internal_error"
    return "internal_error"
