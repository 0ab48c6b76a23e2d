"""Which requests the SDK would serve exactly as the hot path does, and in which protocol era.

The hot path (:mod:`mcplane.fastpath`) may answer a request only where skipping the SDK's
dispatch changes nothing on the wire. These are the SDK-side halves of that rule:

* a local tool qualifies unless the SDK would hand it something the hot path has not got: a
  ``Context`` parameter, resolved (injected) parameters, ``Mcp-Param`` header mappings in its
  input schema (checked by the SDK's inbound ladder), or a return type that can be
  ``input_required`` (multi-round-trip);
* SDK-level middleware must see every message, except the SDK's own built-ins (its
  OpenTelemetry middleware, which mcplane's tracing replaces, and the request-state boundary,
  which has nothing to do with a plain ``tools/call``), recognised by class;
* the era: a 2026-07-28 request is valid when the SDK's inbound ladder says so, at the version it
  names (the one shape the hot path serves, a ``tools/call`` whose envelope and routing headers
  agree plainly, is recognised here without running the ladder: :func:`plain_modern_version`;
  anything else is the ladder's to decide); a stream's era is decided by its opening request,
  as the SDK's dual-era loop decides it;
  a 2025-11-25 session speaks the version its ``initialize`` answer named;
* a body is read alike: the SDK's parser keeps integers beyond 64 bits exact, ``orjson`` reads
  them as floats, so a body with such a number is left to the SDK.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mcp.server.mcpserver.resolve import returns_input_required
from mcp.server.mcpserver.tools.base import Tool
from mcp.server.request_state import RequestStateBoundary
from mcp.shared.inbound import InboundLadderRejection, classify_inbound_request
from mcp_types import CLIENT_CAPABILITIES_META_KEY, PROTOCOL_VERSION_META_KEY
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS

from mcplane.sdk_adapter.otel import SDKOpenTelemetryMiddleware

__all__ = [
    "LATEST_HANDSHAKE_VERSION",
    "PROTOCOL_VERSION_KEY",
    "SDK_BUILTIN_MIDDLEWARE",
    "handshake_version",
    "header_mapped",
    "ladder_version",
    "modern_version",
    "opens_modern",
    "plain_modern_version",
    "read_alike",
    "tool_qualifies",
]

PROTOCOL_VERSION_KEY: str = PROTOCOL_VERSION_META_KEY
"""The ``_meta`` key of a 2026-07-28 request's envelope that names its protocol version."""
LATEST_HANDSHAKE_VERSION: str = HANDSHAKE_PROTOCOL_VERSIONS[-1]
"""The 2025-11-25-era version a session speaks once initialized."""
SDK_BUILTIN_MIDDLEWARE: frozenset[type] = frozenset({SDKOpenTelemetryMiddleware, RequestStateBoundary})
"""The SDK's own middleware classes, which never need to see a plain ``tools/call``."""

_DIGIT_RUNS = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
"""A ``bytes.translate`` table: every ASCII digit to ``0``, every other byte to a space."""
_LONG_RUN = b"0" * 20
"""Twenty digits in a row: possibly an integer beyond 64 bits (or a long digit string, left to the SDK too)."""


def read_alike(body: bytes) -> bool:
    """Whether ``orjson`` reads ``body`` as the SDK's parser does (no integer beyond 64 bits in it): no run
    of twenty ASCII digits, found with two C passes (a translation and a substring search), where a regex
    ``[0-9]{20}`` tried every position (≈ 2 µs on a 300-byte call with twenty digits in all)."""
    return _LONG_RUN not in body.translate(_DIGIT_RUNS)


_MAPPED: dict[int, tuple[Any, bool]] = {}
"""Per input schema (by identity, the schema kept so its id is not reused): :func:`header_mapped`'s verdict."""
_MAPPED_MAX = 1024


def header_mapped(schema: Any) -> bool:
    """Whether an input schema maps arguments to ``Mcp-Param`` headers (``x-mcp-header``).

    Asked on every hot-path call of a provider's tool (a gateway's), whose schema can be large: the
    verdict is kept per schema object (a changed catalog brings new schema objects; none is
    changed in place), so the schema's ``repr`` is taken once, not once per call.
    """
    entry = _MAPPED.get(id(schema))
    if entry is not None and entry[0] is schema:
        return entry[1]
    mapped = "x-mcp-header" in repr(schema)
    if schema is not None:
        if len(_MAPPED) >= _MAPPED_MAX:
            _MAPPED.clear()
        _MAPPED[id(schema)] = (schema, mapped)
    return mapped


def tool_qualifies(tool: Tool) -> bool:
    """Whether the SDK would call ``tool`` with nothing the hot path lacks (see the module doc)."""
    if tool.context_kwarg is not None or tool.resolved_params:
        return False
    if header_mapped(tool.parameters):
        return False
    return not returns_input_required(tool.fn)


_MODERN_VERSIONS = frozenset(MODERN_PROTOCOL_VERSIONS)
_BASE64_SENTINEL = "=?base64?"
"""How a header value the SDK decodes before comparing starts (``decode_header_value``)."""


def plain_modern_version(message: dict[str, Any], headers: Mapping[str, str] | None) -> str | None:
    """The version of a plain 2026-07-28 ``tools/call`` that every rung of the SDK's ladder passes.

    ``None`` does not mean "rejected": only that this shortcut is not sure, and the ladder must
    decide. Sure means: ``params._meta`` is a dict holding the client capabilities and a
    protocol version that is a string the SDK serves; and, with headers (HTTP),
    ``MCP-Protocol-Version`` equals that version, ``Mcp-Method`` is ``tools/call`` as the body's
    method, and ``Mcp-Name`` equals the body's tool name verbatim (a value the SDK would take for
    base64 is left to it).
    """
    params: Any = message.get("params")
    if type(params) is not dict:
        return None
    meta: Any = params.get("_meta")
    if type(meta) is not dict or CLIENT_CAPABILITIES_META_KEY not in meta:
        return None
    version = meta.get(PROTOCOL_VERSION_META_KEY)
    if type(version) is not str or version not in _MODERN_VERSIONS:
        return None
    if headers is None:
        return version
    if headers.get("mcp-protocol-version") != version or message.get("method") != "tools/call":
        return None
    if headers.get("mcp-method") != "tools/call":
        return None
    name: Any = params.get("name")
    if type(name) is not str or headers.get("mcp-name") != name or name.startswith(_BASE64_SENTINEL):
        return None
    return version


def modern_version(message: dict[str, Any], headers: Mapping[str, str] | None) -> str | None:
    """The 2026-07-28-era version the SDK's inbound ladder accepts ``message`` at, else ``None``.

    The plain shape is recognised without the ladder (:func:`plain_modern_version`); every other
    request runs it.
    """
    version = plain_modern_version(message, headers)
    if version is not None:
        return version
    return ladder_version(message, headers)


def ladder_version(message: dict[str, Any], headers: Mapping[str, str] | None) -> str | None:
    """The 2026-07-28-era version the SDK's inbound ladder itself accepts ``message`` at, else ``None``."""
    verdict = classify_inbound_request(message, headers=dict(headers) if headers is not None else None)
    if isinstance(verdict, InboundLadderRejection):
        return None
    version = getattr(verdict, "protocol_version", None)
    return version if version in MODERN_PROTOCOL_VERSIONS else None


def opens_modern(method: str, params: Any) -> bool:
    """Whether a stream's opening request puts the connection in the 2026-07-28 era."""
    meta = params.get("_meta") if isinstance(params, dict) else None
    return method != "initialize" and isinstance(meta, dict) and PROTOCOL_VERSION_KEY in meta


def handshake_version(result: Mapping[str, Any]) -> str | None:
    """The 2025-11-25-era version an ``initialize`` result negotiated (``None``: not one of those)."""
    version = result.get("protocolVersion")
    return version if isinstance(version, str) and version in HANDSHAKE_PROTOCOL_VERSIONS else None
