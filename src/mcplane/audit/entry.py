"""What one audit record says about a call, read from the :class:`~mcplane.pipeline.Call`.

Where the request facts come from (``call.context`` is an :class:`mcplane.Context`):

- **client IP**: the peer of the HTTP request or WebSocket connection that carried the call (the
  ASGI ``scope["client"]``; ``mcplane run`` keeps uvicorn from rewriting it), or, when that peer
  is one of ``http.trusted_proxies``, the right-most ``X-Forwarded-For`` hop that is not (see
  :mod:`mcplane.audit.forwarded`). Empty on stdio, which has no peer.
- **user agent**: the ``User-Agent`` header of the request (or of the WebSocket handshake),
  capped at 256 chars.
- **trace id**: the W3C ``traceparent`` header, else ``traceparent`` in the request's ``_meta``;
  only the 32-hex trace id is kept, and only when the value is well formed; else empty.
- **principal**: ``context.principal`` (subject, tenant), set by the authenticate slot.

Arguments and results are never stored: only SHA-256 of their canonical JSON (which never fails,
see :mod:`mcplane.audit.chain`). Text a client chose is stored bounded and safe for any reader:
lone surrogates and NUL are written as ``\\udXXX`` / ``\\u0000`` text (PostgreSQL's ``jsonb``
refuses a NUL), and a name longer than 1,024 chars keeps its head, its length and its SHA-256.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
import orjson
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, METHOD_NOT_FOUND, CallToolResult, TextContent

from mcplane.audit.chain import canonical, escape_text, sha256_hex
from mcplane.audit.forwarded import TrustedProxies
from mcplane.errors import MCPlaneError, error_object_of
from mcplane.middleware.errors import to_mcplane_error

if TYPE_CHECKING:
    from mcplane.context import Context
    from mcplane.pipeline import Call

__all__ = [
    "RequestFacts",
    "bounded_text",
    "call_base",
    "call_entry",
    "call_text",
    "error_code_of",
    "new_call_id",
    "request_facts",
    "result_code",
    "result_sha256",
    "utc_now",
]

_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
_MAX_TEXT = 256
_MAX_SESSION = 1024
"""Sealed session ids (any replica can continue them) are a few hundred characters: kept whole."""
_MAX_NAME = 1024
_NO_PROXIES = TrustedProxies()


def _safe(text: str) -> str:
    text = escape_text(text)
    return text.replace("\x00", "\\u0000") if "\x00" in text else text


def bounded_text(value: str, limit: int = _MAX_TEXT) -> str:
    """``value`` as text any sink and reader takes: lone surrogates and NUL escaped, at most ``limit`` chars."""
    if type(value) is str and len(value) <= limit and value.isascii() and "\x00" not in value:
        return value  # nothing to cut or escape (the common case: addresses, user agents, subjects)
    return _safe(value[:limit])[:limit]


def _name(value: str) -> str:
    """A call's name, bounded: past :data:`_MAX_NAME` chars its head, full length and SHA-256."""
    text = _safe(value)
    if len(text) <= _MAX_NAME:
        return text
    return f"{text[:_MAX_NAME]}…[{len(text)} chars, sha256:{sha256_hex(text.encode())}]"


_second: list[Any] = [None, ""]
"""The last whole second :func:`utc_now` formatted, and its text up to the seconds."""


_MILLIS = tuple(f".{millis:03d}Z" for millis in range(1000))
"""The text after the seconds, per millisecond."""


def utc_now() -> str:
    """UTC ISO 8601 with milliseconds: ``2026-05-01T12:00:00.123Z``.

    Two per call: the text up to the seconds is formatted once per second and kept, the rest
    looked up.
    """
    second, nanos = divmod(time.time_ns(), 1_000_000_000)
    cached = _second
    if cached[0] != second:
        cached[1] = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        cached[0] = second
    return cached[1] + _MILLIS[nanos // 1_000_000]


_ID_BATCH = 256
"""Call ids made from one ``os.urandom`` read."""
_ids: list[str] = []
"""Call ids made and not handed out yet (emptied in a forked child, which must not reuse its parent's)."""
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_ids.clear)


def _more_ids() -> None:
    raw = bytearray(os.urandom(16 * _ID_BATCH))
    for at in range(0, len(raw), 16):
        raw[at + 6] = (raw[at + 6] & 0x0F) | 0x40  # version 4
        raw[at + 8] = (raw[at + 8] & 0x3F) | 0x80  # the RFC 4122 variant
    text = raw.hex()
    _ids.extend([text[at : at + 32] for at in range(0, len(text), 32)])


def new_call_id() -> str:
    """A random (version 4) UUID as 32 hex digits: ``uuid.uuid4().hex`` without building a ``UUID``.

    The random bytes are read for :data:`_ID_BATCH` ids at a time (one ``getrandom`` call each).
    """
    while True:
        try:
            return _ids.pop()
        except IndexError:  # none left (or another thread took the last one)
            _more_ids()


def _header(headers: Mapping[str, str] | None, name: str) -> str:
    if not headers:
        return ""
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return "" if value is None else bounded_text(str(value))


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


_FACT_HEADERS = (b"traceparent", b"user-agent")
_FORWARDED_FOR = b"x-forwarded-for"


def _scope_headers(scope: Mapping[str, Any]) -> tuple[dict[str, str], str]:
    """The headers a record uses (see :func:`_scan_headers`). When the names are distinct and all
    lower-case (as ASGI servers send them), read from a ``dict`` of them, made in C, instead."""
    raw = scope.get("headers", ())
    if type(raw) is list:
        by_name: dict[bytes, bytes] = {}
        try:
            by_name = dict(raw)
            plain = len(by_name) == len(raw) and b"".join(by_name).islower()
        except (TypeError, ValueError):  # not pairs of bytes: the scan says what it makes of them
            plain = False
        if plain:
            exact: dict[str, str] = {}
            for name in _FACT_HEADERS:
                value = by_name.get(name)
                if value is not None:
                    exact[name.decode("latin-1")] = value.decode("latin-1")
            forwarded = by_name.get(_FORWARDED_FOR)
            return exact, "" if forwarded is None else forwarded.decode("latin-1")
    return _scan_headers(scope)


def _scan_headers(scope: Mapping[str, Any]) -> tuple[dict[str, str], str]:
    """The headers a record uses, read in one pass over the scope's raw headers (where
    ``context.headers`` comes from), by lower-case name: of ``traceparent`` and ``user-agent``
    an exact lower-case name wins over another spelling, the last copy over earlier ones (as in
    ``context.headers``); every copy of ``X-Forwarded-For`` counts, in order, as one list."""
    exact: dict[str, str] = {}
    loose: dict[str, str] = {}
    forwarded: list[str] = []
    for raw_name, raw_value in scope.get("headers", ()):
        if raw_name in _FACT_HEADERS:
            exact[raw_name.decode("latin-1")] = raw_value.decode("latin-1")
            continue
        if raw_name.islower():  # as ASGI servers send them: no other spelling of a fact header
            if raw_name == _FORWARDED_FOR:
                forwarded.append(raw_value.decode("latin-1"))
            continue
        lowered = raw_name.lower()
        if lowered == _FORWARDED_FOR:
            forwarded.append(raw_value.decode("latin-1"))
        elif lowered in _FACT_HEADERS:
            loose[lowered.decode("latin-1")] = raw_value.decode("latin-1")
    return ({**loose, **exact} if loose else exact), ",".join(forwarded)


def _facts(context: Context, proxies: TrustedProxies) -> tuple[str, str, str, str]:
    """Client IP, user agent, trace id and session id of ``context`` (see :func:`request_facts`)."""
    scope = context.scope
    session_id = bounded_text(str(context.session_id or ""), _MAX_SESSION)
    if scope is None:
        headers = context.headers
        if headers is None:
            return "", "", "", session_id
        trace = _trace_id(_header(headers, "traceparent")) or _trace_id(context.request_meta.get("traceparent"))
        return "", _header(headers, "user-agent"), trace, session_id
    found, forwarded_for = _scope_headers(scope)
    peer = scope.get("client")
    host = peer[0] if isinstance(peer, list | tuple) and peer else None
    client_ip = bounded_text(proxies.client_ip(str(host), forwarded_for)) if host else ""
    trace = _trace_id(found.get("traceparent")) or _trace_id(context.request_meta.get("traceparent"))
    return client_ip, bounded_text(found.get("user-agent", "")), trace, session_id


def request_facts(context: Context, proxies: TrustedProxies = _NO_PROXIES) -> RequestFacts:
    """The request facts of ``context``; ``proxies``: whose ``X-Forwarded-For`` to believe."""
    return RequestFacts(*_facts(context, proxies))


def call_entry(call: Call, call_id: str, facts: RequestFacts) -> dict[str, Any]:
    """The fields shared by a call's ``pending`` record and its outcome record."""
    principal = call.context.principal
    return {
        "call_id": call_id,
        "subject": bounded_text(principal.subject),
        "tenant": None if principal.tenant is None else bounded_text(principal.tenant),
        "kind": call.kind,
        "name": _name(call.name),
        "args_sha256": sha256_hex(canonical(dict(call.arguments))),
        "client_ip": facts.client_ip,
        "user_agent": facts.user_agent,
        "trace_id": facts.trace_id,
        "correlation_id": call.context.correlation_id,
        "session_id": facts.session_id,
    }


def call_base(call: Call, call_id: str, proxies: TrustedProxies = _NO_PROXIES) -> dict[str, Any]:
    """``call_entry(call, call_id, request_facts(call.context, proxies))``, without the ``RequestFacts``
    in between (what the audit slot builds per call)."""
    context = call.context
    client_ip, user_agent, trace_id, session_id = _facts(context, proxies)
    principal = context.principal
    tenant = principal.tenant
    return {
        "call_id": call_id,
        "subject": bounded_text(principal.subject),
        "tenant": None if tenant is None else bounded_text(tenant),
        "kind": call.kind,
        "name": _name(call.name),
        "args_sha256": sha256_hex(canonical(dict(call.arguments))),
        "client_ip": client_ip,
        "user_agent": user_agent,
        "trace_id": trace_id,
        "correlation_id": context.correlation_id,
        "session_id": session_id,
    }


_CUTS = (',"kind":', ',"session_id":', ',"subject":', ',"trace_id":')


def call_text(base: Mapping[str, Any]) -> tuple[str, str, str, str, str] | None:
    """The canonical text of :func:`call_base`'s fields, cut where a record's other members sort between
    them: ``args_sha256`` … ``correlation_id`` (with the record's opening ``{``), ``kind`` and ``name``,
    ``session_id``, ``subject`` and ``tenant``, ``trace_id`` and ``user_agent`` (each but the last with its
    comma). ``None`` when a value is not text (or ``None``) or orjson refuses it: the caller then encodes the
    whole record as :func:`~mcplane.audit.chain.canonical` does.

    Each member's bytes in a canonical record are its bytes here (orjson writes a string the same
    wherever it is), and with only strings and ``null`` as values a quote outside a string is a
    delimiter, so each cut is found where the member starts.
    """
    if type(base["kind"]) is not str or type(base["correlation_id"]) is not str:
        return None  # the only two fields not made text here (the others are, see call_base)
    try:
        text = orjson.dumps(base, option=orjson.OPT_SORT_KEYS).decode()
    except orjson.JSONEncodeError:  # a lone surrogate in the correlation id
        return None
    kind_at = text.find(_CUTS[0]) + 1
    session_at = text.find(_CUTS[1], kind_at) + 1
    subject_at = text.find(_CUTS[2], session_at) + 1
    trace_at = text.find(_CUTS[3], subject_at) + 1
    return (
        text[:kind_at],
        text[kind_at:session_at],
        text[session_at:subject_at],
        text[subject_at:trace_at],
        text[trace_at:-1],
    )


_PLAIN_SCALARS = frozenset({str, int, float, bool, type(None)})
_PLAIN_NODES = 256
"""Structured content with more values than this is left to pydantic's dump (a walk in Python costs more)."""


def _plain_json(value: dict[Any, Any]) -> bool:
    """``value`` is made of ``dict`` (``str`` keys), ``list``, ``str``, ``int``, ``float``, ``bool`` and ``None``
    only (exact types, at most :data:`_PLAIN_NODES` values): pydantic's JSON dump of it is itself, but for
    non-finite floats, which it writes as ``None`` and orjson as ``null``: the same bytes."""
    scalars = _PLAIN_SCALARS
    for key, child in value.items():  # the common case: one flat object
        if type(key) is not str:
            return False
        if type(child) not in scalars:
            break
    else:
        return len(value) <= _PLAIN_NODES
    stack: list[Any] = [value]
    budget = _PLAIN_NODES
    while stack:
        node = stack.pop()
        budget -= 1
        if budget < 0:
            return False
        kind = type(node)
        if kind is dict:
            for key in node:
                if type(key) is not str:
                    return False
            stack.extend(node.values())
        elif kind is list:
            stack.extend(node)
        elif kind not in scalars:
            return False
    return True


def _plain_result(result: Any) -> dict[str, Any] | None:
    """What ``canonical`` writes for a ``CallToolResult`` of plain text blocks and, optionally, plain
    structured content (its JSON dump: aliases, no ``None`` fields), built without pydantic's
    serializer; ``None`` for any other result."""
    if type(result) is not CallToolResult or result.meta is not None:
        return None
    structured = result.structured_content
    if structured is not None and (type(structured) is not dict or not _plain_json(structured)):
        return None
    is_error, result_type = result.is_error, result.result_type
    if type(is_error) is not bool or type(result_type) is not str:
        return None
    blocks: list[dict[str, Any]] = []
    for block in result.content:
        if type(block) is not TextContent or block.annotations is not None or block.meta is not None:
            return None
        text, kind = block.text, block.type
        if type(text) is not str or type(kind) is not str:
            return None
        blocks.append({"type": kind, "text": text})
    if structured is None:
        return {"content": blocks, "isError": is_error, "resultType": result_type}
    return {"content": blocks, "structuredContent": structured, "isError": is_error, "resultType": result_type}


def result_sha256(result: Any) -> str:
    """SHA-256 of the canonical JSON of a call's result (a plain tool result without a pydantic dump)."""
    plain = _plain_result(result)
    return sha256_hex(canonical(result if plain is None else plain))


def result_code(result: Any) -> str | None:
    """The error code of a tool result with ``isError: true`` (``tool_error`` if it has none)."""
    if not isinstance(result, CallToolResult) or not result.is_error:
        return None
    error = error_object_of(result)
    code = error.get("code") if error is not None else None
    return bounded_text(code) if isinstance(code, str) and code else "tool_error"


def error_code_of(exc: BaseException, kind: str = "tool") -> str:
    """The stable code of an exception raised by a call of ``kind``, as the errors slot answers it.

    A JSON-RPC error without an mcplane code is classified by its JSON-RPC code: invalid params
    is ``not_found`` on a resource read (the SDK's "resource not found", also its answer to a
    template parameter that fails its path checks, such as ``..``) and ``invalid_arguments``
    otherwise; method not found is ``not_found``; anything else ``protocol_error``.
    """
    if isinstance(exc, anyio.get_cancelled_exc_class()):
        return "cancelled"
    if isinstance(exc, MCPlaneError):
        return exc.code
    if isinstance(exc, MCPError):
        data = exc.data
        code = data.get("code") if isinstance(data, Mapping) else None
        if isinstance(code, str) and code:
            return bounded_text(code)
        if exc.code == INVALID_PARAMS:
            return "not_found" if kind == "resource" else "invalid_arguments"
        return "not_found" if exc.code == METHOD_NOT_FOUND else "protocol_error"
    if isinstance(exc, Exception):
        mapped = to_mcplane_error(exc)
        return mapped.code if mapped is not None else "internal_error"
    return "internal_error"
