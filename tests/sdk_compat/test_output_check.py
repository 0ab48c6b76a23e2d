"""The gateway's quick output-schema check (:func:`mcplane.sdk_adapter.client.output_known_valid`)
only ever says "valid" where the SDK client's own ``validate_tool_result`` passes: whatever it is
unsure of is left to the SDK, which then validates as before."""

from __future__ import annotations

from typing import Any

import pytest
from mcp.client.session import ClientSession
from mcp_types import CallToolResult, TextContent

from mcplane.sdk_adapter.client import output_known_valid

OBJECT = {"type": "object", "properties": {"result": {"type": "string"}}, "required": ["result"]}
CASES: dict[str, tuple[dict[str, Any] | None, Any, bool]] = {
    # name: (output schema, structured content, the quick check must say "valid")
    "string result": (OBJECT, {"result": "t1"}, True),
    "wrong type": (OBJECT, {"result": 1}, False),
    "missing required": (OBJECT, {}, False),
    "no schema": (None, {"anything": 1}, True),
    "no structured content": (OBJECT, None, False),
    "additional properties refused": (
        {"type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": False},
        {"a": 1, "b": 2},
        False,
    ),
    "integer-valued float": ({"type": "object", "properties": {"n": {"type": "integer"}}}, {"n": 1.0}, True),
    "bool is not an integer": ({"type": "object", "properties": {"n": {"type": "integer"}}}, {"n": True}, False),
    "enum keeps 1 and true apart": ({"type": "object", "properties": {"e": {"enum": [1]}}}, {"e": True}, False),
    "astral length": ({"type": "object", "properties": {"s": {"maxLength": 1}}}, {"s": "😀"}, True),
    "big integer": ({"type": "object", "properties": {"n": {"type": "integer"}}}, {"n": 2**70}, True),
    "format not asserted": ({"type": "object", "properties": {"m": {"format": "email"}}}, {"m": "not an email"}, True),
    "reference left to the SDK": (
        {"type": "object", "$defs": {"s": {"type": "string"}}, "properties": {"r": {"$ref": "#/$defs/s"}}},
        {"r": "x"},
        False,
    ),
    "pattern left to the SDK": ({"type": "object", "properties": {"p": {"pattern": "^a+$"}}}, {"p": "aa"}, False),
    "invalid schema left to the SDK": ({"type": "object", "properties": {"x": {"type": "nonsense"}}}, {"x": 1}, False),
    "draft 7": ({"$schema": "http://json-schema.org/draft-07/schema#", **OBJECT}, {"result": "x"}, True),
    "nested arrays": (
        {"type": "object", "properties": {"l": {"type": "array", "items": {"type": "number"}, "maxItems": 3}}},
        {"l": [1, 2.5, -3]},
        True,
    ),
    "too many items": (
        {"type": "object", "properties": {"l": {"type": "array", "maxItems": 1}}},
        {"l": [1, 2]},
        False,
    ),
}


def session_with(name: str, schema: dict[str, Any] | None) -> ClientSession:
    """A client session that has listed one tool (only its output-schema caches are set)."""
    session = ClientSession.__new__(ClientSession)
    session._tool_output_schemas = {name: schema}  # pyright: ignore[reportPrivateUsage]
    session._tool_output_validators = {}  # pyright: ignore[reportPrivateUsage]
    return session


async def sdk_passes(session: ClientSession, name: str, result: CallToolResult) -> bool:
    try:
        await session.validate_tool_result(name, result)
    except RuntimeError:
        return False
    return True


@pytest.mark.parametrize("case", list(CASES))
async def test_the_quick_check_says_valid_only_where_the_sdk_passes(case: str) -> None:
    schema, structured, quick = CASES[case]
    session = session_with("tool", schema)
    result = CallToolResult(content=[TextContent(type="text", text="x")], structured_content=structured)
    known = output_known_valid(session, "tool", result)
    assert known is quick
    if known:
        assert await sdk_passes(session, "tool", result)


def test_a_tool_the_session_has_not_listed_is_the_sdks() -> None:
    session = session_with("other", OBJECT)
    result = CallToolResult(content=[], structured_content={"result": "x"})
    assert output_known_valid(session, "tool", result) is False


def test_a_changed_schema_is_compiled_again() -> None:
    session = session_with("tool", OBJECT)
    result = CallToolResult(content=[], structured_content={"result": "x"})
    assert output_known_valid(session, "tool", result) is True
    session._tool_output_schemas["tool"] = {  # pyright: ignore[reportPrivateUsage]
        "type": "object",
        "properties": {"result": {"type": "integer"}},
    }
    assert output_known_valid(session, "tool", result) is False


def test_a_relisted_schema_of_the_same_content_is_not_compiled_again(monkeypatch: pytest.MonkeyPatch) -> None:
    import mcplane.sdk_adapter.client as client_module

    compiled: list[object] = []
    original = client_module.__dict__["_compile"]

    def counting(schema: dict[str, Any], text: bytes) -> Any:
        compiled.append(schema)
        return original(schema, text)

    monkeypatch.setattr(client_module, "_compile", counting)
    schema = {"type": "object", "properties": {"relisted": {"type": "string"}}, "required": ["relisted"]}
    session = session_with("tool", schema)
    good = CallToolResult(content=[], structured_content={"relisted": "x"})
    bad = CallToolResult(content=[], structured_content={"relisted": 1})
    assert output_known_valid(session, "tool", good) is True
    # The health check's re-listing: a new object, same content (keys in another order).
    session._tool_output_schemas["tool"] = {  # pyright: ignore[reportPrivateUsage]
        "required": ["relisted"],
        "properties": {"relisted": {"type": "string"}},
        "type": "object",
    }
    assert output_known_valid(session, "tool", good) is True
    assert output_known_valid(session, "tool", bad) is False
    assert len(compiled) == 1
