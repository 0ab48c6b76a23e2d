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

import jsonschema_rs
import orjson
from mcp import Client
from mcp.client.session import (
    ClientSession,
    _clamp_inbound_ttl,  # pyright: ignore[reportPrivateUsage]
    _later_revision_fields,  # pyright: ignore[reportPrivateUsage]
)
from mcp.shared.dispatcher import CallOptions
from mcp_types import CallToolResult, TextContent
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS

from mcplane.sdk_adapter.results import text_blocks_only

__all__ = [
    "call_tool_result",
    "clamp_inbound_ttl",
    "later_revision_fields",
    "negotiated_version",
    "output_known_valid",
    "plain_call_tool_result",
    "plain_tool_result",
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


_PLAIN_KEYS = frozenset({"content", "structuredContent", "isError", "_meta"})
_PLAIN_KEYS_MODERN = _PLAIN_KEYS | {"resultType"}
_EMPTY: dict[str, Any] = {}


def plain_tool_result(raw: dict[str, Any], version: str) -> bool:
    """True when a raw ``tools/call`` result is one the per-version result check
    (``validate_server_result``) passes and that has no key of a later revision, known without
    running it: text blocks only (``type`` and ``text``, nothing else), an optional structured
    object, a boolean ``isError``, a ``_meta`` object (free-form at every revision) and, at
    2026-07-28, ``resultType: "complete"`` (which that revision requires). ``False`` means only "run the check".
    ``tests/sdk_compat/test_plain_result.py`` holds it against the check at every revision.
    """
    if version in MODERN_PROTOCOL_VERSIONS:
        if not raw.keys() <= _PLAIN_KEYS_MODERN or raw.get("resultType") != "complete":
            return False
    elif version not in HANDSHAKE_PROTOCOL_VERSIONS or not raw.keys() <= _PLAIN_KEYS:
        return False
    if not isinstance(raw.get("isError", False), bool):
        return False
    if not isinstance(raw.get("structuredContent", _EMPTY), dict) or not isinstance(raw.get("_meta", _EMPTY), dict):
        return False
    return text_blocks_only(raw.get("content"))


_FIELD_OF = {
    "content": "content",
    "structuredContent": "structured_content",
    "isError": "is_error",
    "_meta": "meta",
    "resultType": "result_type",
}
"""A plain raw result's keys (aliases) and the ``CallToolResult`` fields they set."""
_TEXT_SET = frozenset({"type", "text"})
_new = object.__new__
_set = object.__setattr__


def plain_call_tool_result(session: ClientSession, raw: dict[str, Any]) -> CallToolResult | None:
    """What :func:`call_tool_result` makes of a raw result :func:`plain_tool_result` accepted (whose
    ``_meta`` may also be ``None``), built directly instead of by pydantic's validation: the same
    ``CallToolResult`` and ``TextContent`` models, field values, fields set and private state, at a
    third of the cost. ``None`` when the session's adapter would route the result to an extension's
    result type it negotiated (then :func:`call_tool_result` reads it).
    ``tests/sdk_compat/test_plain_result.py`` compares the two on every plain shape at every revision.
    """
    if raw.get("resultType") in session._active_claims:  # pyright: ignore[reportPrivateUsage]
        return None
    blocks: list[Any] = []
    for block in raw["content"]:
        text = _new(TextContent)
        _set(text, "__dict__", {"type": "text", "text": block["text"], "annotations": None, "meta": None})
        _set(text, "__pydantic_fields_set__", set(_TEXT_SET))
        _set(text, "__pydantic_extra__", None)
        _set(text, "__pydantic_private__", None)
        blocks.append(text)
    meta: Any = raw.get("_meta")
    result = _new(CallToolResult)
    _set(
        result,
        "__dict__",
        {
            "meta": dict(meta) if meta is not None else None,  # pydantic's dict validation copies
            "content": blocks,
            "structured_content": raw.get("structuredContent"),
            "is_error": raw.get("isError", False),
            "result_type": "complete",
        },
    )
    _set(result, "__pydantic_fields_set__", {_FIELD_OF[key] for key in raw})
    _set(result, "__pydantic_extra__", None)
    _set(result, "__pydantic_private__", None)
    return result


async def relist_tool(client: Client, name: str) -> None:
    """Re-list the upstream's tools until ``name`` is seen (the SDK client's recovery from ``-32020``)."""
    await client._relist_tool(name)  # pyright: ignore[reportPrivateUsage]


_FAST_CHECKS: dict[int, tuple[dict[str, Any], jsonschema_rs.Validator | None]] = {}
"""Per output schema (by identity, the schema kept so its id is not reused): a compiled Rust
validator, or ``None`` when the schema is one only the SDK's own validator may judge."""
_FAST_CHECKS_MAX = 1024
_COMPILED: dict[bytes, jsonschema_rs.Validator | None] = {}
"""Per output schema's text (keys sorted): what :func:`_compile` made of it. A gateway re-lists its
upstream's tools every health-check interval, and each listing brings new schema objects with the
same content: they take the validator already compiled (a compile costs milliseconds)."""
_SDK_ONLY = (b'"$ref"', b'"$dynamicRef"', b'"$recursiveRef"', b'"pattern', b'"$id"', b'"$anchor"', b'"$dynamicAnchor"')
"""Keywords whose meaning could differ between the two validators (reference resolution, regular
expression dialects): a schema that names one is always left to the SDK's validator."""


def output_known_valid(session: ClientSession, name: str, result: CallToolResult) -> bool:
    """True when ``session.validate_tool_result(name, result)`` would pass without raising, known
    without running it: the tool's output schema is cached and absent, or it is a schema without
    references or patterns, valid against its metaschema, and a compiled ``jsonschema_rs``
    validator (formats not asserted, as the SDK's validator does not assert them) accepts the
    structured content. ``False`` means only "ask the SDK", which then validates (and refreshes
    its schemas, raises its own errors) exactly as before; the SDK's Python validator costs tens of
    microseconds per result, the compiled one about one.
    """
    schemas = session._tool_output_schemas  # pyright: ignore[reportPrivateUsage]
    if name not in schemas:
        return False  # the SDK lists the tools first
    schema = schemas[name]
    if schema is None:
        return True  # the SDK validates nothing
    structured = result.structured_content
    if structured is None:
        return False
    entry = _FAST_CHECKS.get(id(schema))
    if entry is None or entry[0] is not schema:
        entry = (schema, _compiled(schema))
        if len(_FAST_CHECKS) >= _FAST_CHECKS_MAX:
            _FAST_CHECKS.clear()
        _FAST_CHECKS[id(schema)] = entry
    validator = entry[1]
    if validator is None:
        return False
    try:
        return validator.is_valid(structured)
    except Exception:  # a value the Rust side cannot read: the SDK decides
        return False


def _compiled(schema: dict[str, Any]) -> jsonschema_rs.Validator | None:
    """:func:`_compile` of ``schema``, from :data:`_COMPILED` when a schema of the same text was seen."""
    try:
        text = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return None
    if text in _COMPILED:
        return _COMPILED[text]
    validator = _compile(schema, text)
    if len(_COMPILED) >= _FAST_CHECKS_MAX:
        _COMPILED.clear()
    _COMPILED[text] = validator
    return validator


def _compile(schema: dict[str, Any], text: bytes) -> jsonschema_rs.Validator | None:
    from jsonschema import SchemaError
    from jsonschema.validators import validator_for

    if any(keyword in text for keyword in _SDK_ONLY):
        return None
    try:
        validator_for(schema).check_schema(schema)  # what the SDK checks before validating
    except SchemaError:
        return None
    try:
        return jsonschema_rs.validator_for(schema, validate_formats=False)
    except Exception:  # a schema the Rust side refuses: the SDK decides
        return None
