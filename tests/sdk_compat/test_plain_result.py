"""The gateway's plain-result shortcut (:func:`mcplane.sdk_adapter.client.plain_tool_result`) says
"plain" only for raw ``tools/call`` results that the SDK's per-version result check passes and
that carry no key of a later revision, at every revision: for those the gateway skips the check
(``mcplane.gateway.forward``). Everything else still goes through the check, as before."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from mcp_types import SERVER_INFO_META_KEY
from mcp_types import methods as _methods
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

from mcplane.sdk_adapter.client import later_revision_fields, plain_tool_result

VERSIONS = (*HANDSHAKE_PROTOCOL_VERSIONS, *MODERN_PROTOCOL_VERSIONS)
TEXT = {"type": "text", "text": "hello"}
STAMP = {SERVER_INFO_META_KEY: {"name": "upstream", "version": "1.0"}}
BIG = {"type": "text", "text": "x" * 1_000_000}

SHAPES: dict[str, tuple[dict[str, Any], bool]] = {
    # name: (raw result without resultType, plain at every revision)
    "one text block": ({"content": [TEXT]}, True),
    "no content blocks": ({"content": []}, True),
    "many text blocks": ({"content": [TEXT] * 50}, True),
    "a big text block": ({"content": [BIG]}, True),
    "unicode text": ({"content": [{"type": "text", "text": "é😀\u0000"}]}, True),
    "error result": ({"content": [TEXT], "isError": True}, True),
    "not an error": ({"content": [TEXT], "isError": False}, True),
    "structured content": ({"content": [TEXT], "structuredContent": {"result": "hello", "n": [1, 2.5, None]}}, True),
    "structured content with an error": ({"content": [TEXT], "structuredContent": {}, "isError": True}, True),
    "serverInfo stamp": ({"content": [TEXT], "_meta": STAMP}, True),
    "garbled serverInfo stamp": ({"content": [TEXT], "_meta": {SERVER_INFO_META_KEY: 5}}, True),
    "other meta": ({"content": [TEXT], "_meta": {"a": 1, "": None}}, True),
    "null isError": ({"content": [TEXT], "isError": None}, False),
    "string isError": ({"content": [TEXT], "isError": "yes"}, False),
    "numeric isError": ({"content": [TEXT], "isError": 1}, False),
    "structured list": ({"content": [TEXT], "structuredContent": [1]}, False),
    "null structured content": ({"content": [TEXT], "structuredContent": None}, False),
    "meta not an object": ({"content": [TEXT], "_meta": [1]}, False),
    "null meta": ({"content": [TEXT], "_meta": None}, False),
    "no content": ({"structuredContent": {"a": 1}}, False),
    "content not a list": ({"content": TEXT}, False),
    "null content": ({"content": None}, False),
    "image block": ({"content": [{"type": "image", "data": "aGk=", "mimeType": "image/png"}]}, False),
    "resource link": ({"content": [{"type": "resource_link", "uri": "file:///a", "name": "a"}]}, False),
    "text block with annotations": ({"content": [{**TEXT, "annotations": {"priority": 0.5}}]}, False),
    "text block with _meta": ({"content": [{**TEXT, "_meta": {"a": 1}}]}, False),
    "text block without text": ({"content": [{"type": "text"}]}, False),
    "text not a string": ({"content": [{"type": "text", "text": 5}]}, False),
    "block not an object": ({"content": ["hello"]}, False),
    "unknown type": ({"content": [{"type": "video", "text": "a"}]}, False),
    "unknown key": ({"content": [TEXT], "extra": 1}, False),
    "input requests": ({"content": [TEXT], "inputRequests": {}}, False),
    "request state": ({"content": [TEXT], "requestState": "s"}, False),
    "task": ({"content": [TEXT], "task": {"taskId": "t"}}, False),
}


def check_passes(raw: dict[str, Any], version: str) -> bool:
    try:
        _methods.validate_server_result("tools/call", version, copy.deepcopy(raw))
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", sorted(SHAPES))
def test_plain_only_where_the_check_passes_and_nothing_is_dropped(name: str, version: str) -> None:
    raw, plain = SHAPES[name]
    if version in MODERN_PROTOCOL_VERSIONS:
        raw = {**raw, "resultType": "complete"}
    assert plain_tool_result(raw, version) is plain
    if plain:
        assert check_passes(raw, version)
        assert later_revision_fields("tools/call", version).isdisjoint(raw)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("result_type", [None, "complete", "input_required", "task", "other", 1])
def test_result_type(version: str, result_type: Any) -> None:
    raw: dict[str, Any] = {"content": [TEXT]}
    if result_type is not None:
        raw["resultType"] = result_type
    plain = plain_tool_result(raw, version)
    modern = version in MODERN_PROTOCOL_VERSIONS
    # 2026-07-28 requires resultType; earlier revisions do not know it (left to the check's path).
    assert plain is ((modern and result_type == "complete") or (not modern and result_type is None))
    if plain:
        assert check_passes(raw, version)
        assert later_revision_fields("tools/call", version).isdisjoint(raw)


def test_an_unknown_version_is_never_plain() -> None:
    assert plain_tool_result({"content": [TEXT]}, "2099-01-01") is False


def test_the_result_is_not_changed() -> None:
    raw = {"content": [TEXT], "structuredContent": {"a": 1}, "_meta": STAMP}
    before = copy.deepcopy(raw)
    assert plain_tool_result(raw, "2025-11-25") is True
    assert raw == before
