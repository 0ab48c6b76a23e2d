"""The SDK client session's request stamping and result reading, for the gateway's own sends.

The gateway forwards a caller's request on an upstream connection the SDK client opened
(:mod:`mcplane.gateway.forward`), often without the SDK's dispatcher (the lean lane,
:mod:`mcplane.gateway.lean`). To look to the upstream exactly like the SDK client, the request is
stamped by the session's own stamp (the 2026-07-28 ``_meta`` envelope and routing headers, or
the 2025-11-25 protocol-version header), and the raw answer is read as the session reads it: a
negative ``ttlMs`` floored, keys of a later revision dropped, a ``tools/call`` result validated by
the session's adapter (which knows the extensions it negotiated). These are private to the SDK's
``ClientSession`` and ``Client``; the functions here are the only place mcplane touches them.
"""

from __future__ import annotations

from typing import Any

from mcp import Client
from mcp.client.session import (
    ClientSession,
    _clamp_inbound_ttl,  # pyright: ignore[reportPrivateUsage]
    _later_revision_fields,  # pyright: ignore[reportPrivateUsage]
)
from mcp.shared.dispatcher import CallOptions
from mcp_types import CallToolResult

__all__ = [
    "call_tool_result",
    "clamp_inbound_ttl",
    "later_revision_fields",
    "negotiated_version",
    "relist_tool",
    "send_raw",
    "stamp",
]

clamp_inbound_ttl = _clamp_inbound_ttl
"""Floor a negative ``ttlMs`` of a raw result to 0 in place, as the SDK client does before validating."""
later_revision_fields = _later_revision_fields
"""``later_revision_fields(method, version)``: result keys only a revision newer than ``version`` has."""


def stamp(session: ClientSession, data: dict[str, Any]) -> CallOptions:
    """Stamp ``data`` (``method``, ``params``) as ``session`` stamps its own requests; the call options
    (headers) the stamp asks for."""
    options: CallOptions = {}
    session._stamp(data, options)  # pyright: ignore[reportPrivateUsage]
    return options


async def send_raw(session: ClientSession, data: dict[str, Any], options: CallOptions) -> dict[str, Any]:
    """Send a stamped request through the session's dispatcher; the raw result."""
    raw = await session._dispatcher.send_raw_request(data["method"], data.get("params"), options)  # pyright: ignore[reportPrivateUsage]
    return dict(raw)


def negotiated_version(session: ClientSession) -> str:
    """The protocol version the session speaks (2025-11-25 before one was negotiated, as the SDK assumes)."""
    return session._negotiated_version or "2025-11-25"  # pyright: ignore[reportPrivateUsage]


def call_tool_result(session: ClientSession, raw: dict[str, Any]) -> Any:
    """A raw ``tools/call`` result validated as the session validates it (a ``CallToolResult``, or an
    extension's result type it negotiated); raises ``pydantic.ValidationError``."""
    result: CallToolResult | Any = session._call_tool_adapter.validate_python(raw, by_name=False)  # pyright: ignore[reportPrivateUsage]
    return result


async def relist_tool(client: Client, name: str) -> None:
    """Re-list the upstream's tools until ``name`` is seen (the SDK client's recovery from ``-32020``)."""
    await client._relist_tool(name)  # pyright: ignore[reportPrivateUsage]
