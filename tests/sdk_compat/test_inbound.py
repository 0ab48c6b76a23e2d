"""The plain 2026-07-28 ``tools/call`` is recognised without the SDK's inbound ladder, and only
where the ladder accepts it at the same version: over a corpus of valid and invalid envelopes and
routing headers, the shortcut is either unsure (``None``: the ladder decides) or agrees."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from mcplane.sdk_adapter import eligibility
from mcplane.sdk_adapter.eligibility import ladder_version, modern_version, plain_modern_version

VERSION_KEY = "io.modelcontextprotocol/protocolVersion"
CAPABILITIES_KEY = "io.modelcontextprotocol/clientCapabilities"
INFO_KEY = "io.modelcontextprotocol/clientInfo"
MODERN = "2026-07-28"

_ABSENT = object()


def _meta(version: Any = MODERN, capabilities: Any = _ABSENT, info: Any = _ABSENT) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if version is not _ABSENT:
        meta[VERSION_KEY] = version
    meta[CAPABILITIES_KEY] = {} if capabilities is _ABSENT else capabilities
    if info is not _ABSENT:
        meta[INFO_KEY] = info
    return meta


def _message(
    name: Any = "echo", meta: Any = _ABSENT, method: Any = "tools/call", request_id: Any = 1
) -> dict[str, Any]:
    params: dict[str, Any] = {"arguments": {"text": "hi"}}
    if name is not _ABSENT:
        params["name"] = name
    params["_meta"] = _meta() if meta is _ABSENT else meta
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
    if request_id is not _ABSENT:
        message["id"] = request_id
    return message


MESSAGES: list[tuple[str, dict[str, Any]]] = [
    ("plain", _message()),
    ("string-id", _message(request_id="abc")),
    ("bad-id", _message(request_id=True)),
    ("no-id", _message(request_id=_ABSENT)),
    ("client-info", _message(meta=_meta(info={"name": "c", "version": "1"}))),
    ("capabilities-null", _message(meta=_meta(capabilities=None))),
    ("no-capabilities", _message(meta={VERSION_KEY: MODERN})),
    ("no-version", _message(meta=_meta(version=_ABSENT))),
    ("version-null", _message(meta=_meta(version=None))),
    ("version-number", _message(meta=_meta(version=20260728))),
    ("version-list", _message(meta=_meta(version=[MODERN]))),
    ("version-handshake", _message(meta=_meta(version="2025-11-25"))),
    ("version-unknown", _message(meta=_meta(version="2099-01-01"))),
    ("version-padded", _message(meta=_meta(version=MODERN + " "))),
    ("meta-null", _message(meta=None)),
    ("meta-list", _message(meta=[VERSION_KEY])),
    ("meta-empty", _message(meta={})),
    ("no-name", _message(name=_ABSENT)),
    ("name-null", _message(name=None)),
    ("name-number", _message(name=5)),
    ("name-base64", _message(name="=?base64?ZWNobw==?=")),
    ("name-spaces", _message(name=" echo ")),
    ("method-other", _message(method="prompts/get")),
    ("method-list", _message(method="tools/list")),
    ("method-null", _message(method=None)),
    ("params-list", {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": [1]}),
    ("no-params", {"jsonrpc": "2.0", "id": 1, "method": "tools/call"}),
]

HEADER_SETS: list[tuple[str, dict[str, str] | None]] = [
    ("none", None),
    ("matching", {"mcp-protocol-version": MODERN, "mcp-method": "tools/call", "mcp-name": "echo"}),
    ("no-headers", {}),
    ("no-version", {"mcp-method": "tools/call", "mcp-name": "echo"}),
    ("version-handshake", {"mcp-protocol-version": "2025-11-25", "mcp-method": "tools/call", "mcp-name": "echo"}),
    ("version-unknown", {"mcp-protocol-version": "2099-01-01", "mcp-method": "tools/call", "mcp-name": "echo"}),
    ("no-method", {"mcp-protocol-version": MODERN, "mcp-name": "echo"}),
    ("method-other", {"mcp-protocol-version": MODERN, "mcp-method": "prompts/get", "mcp-name": "echo"}),
    ("method-case", {"mcp-protocol-version": MODERN, "mcp-method": "Tools/Call", "mcp-name": "echo"}),
    ("no-name", {"mcp-protocol-version": MODERN, "mcp-method": "tools/call"}),
    ("name-other", {"mcp-protocol-version": MODERN, "mcp-method": "tools/call", "mcp-name": "other"}),
    ("name-base64", {"mcp-protocol-version": MODERN, "mcp-method": "tools/call", "mcp-name": "=?base64?ZWNobw==?="}),
    (
        "name-base64-of-sentinel",
        {
            "mcp-protocol-version": MODERN,
            "mcp-method": "tools/call",
            "mcp-name": "=?base64?PT9iYXNlNjQ/WldOb2J3PT0/PQ==?=",
        },
    ),
    ("name-bad-base64", {"mcp-protocol-version": MODERN, "mcp-method": "tools/call", "mcp-name": "=?base64?!!?="}),
    ("name-spaces", {"mcp-protocol-version": MODERN, "mcp-method": "tools/call", "mcp-name": " echo "}),
    ("other-headers", {"mcp-protocol-version": MODERN, "mcp-method": "tools/call", "mcp-name": "echo", "x-a": "b"}),
]

CASES = list(itertools.product(MESSAGES, HEADER_SETS))
IDS = [f"{m}/{h}" for (m, _), (h, _) in CASES]


@pytest.mark.parametrize(("message_case", "header_case"), CASES, ids=IDS)
def test_the_shortcut_agrees_with_the_ladder_or_defers(
    message_case: tuple[str, dict[str, Any]], header_case: tuple[str, dict[str, str] | None]
) -> None:
    _, message = message_case
    _, headers = header_case
    sdk = ladder_version(message, headers)
    shortcut = plain_modern_version(message, headers)
    assert shortcut is None or shortcut == sdk
    assert modern_version(message, headers) == sdk


def test_the_corpus_has_both_verdicts() -> None:
    verdicts = [ladder_version(m, h) for (_, m), (_, h) in CASES]
    assert MODERN in verdicts
    assert None in verdicts


@pytest.mark.parametrize(
    "headers", [None, {"mcp-protocol-version": MODERN, "mcp-method": "tools/call", "mcp-name": "echo"}]
)
def test_the_plain_call_never_runs_the_ladder(monkeypatch: pytest.MonkeyPatch, headers: dict[str, str] | None) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the ladder ran")

    monkeypatch.setattr(eligibility, "classify_inbound_request", refuse)
    assert modern_version(_message(), headers) == MODERN
    assert modern_version(_message(request_id="x", meta=_meta(info={"name": "c"})), headers) == MODERN
