"""``result_sha256``: a plain text tool result (with plain structured content or none) is hashed from a
dict built by hand, not pydantic's dump; every result, plain or not, hashes to what
``sha256(canonical(result))`` gives (the chain's bytes)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mcp_types import (
    Annotations,
    CallToolResult,
    EmbeddedResource,
    GetPromptResult,
    ImageContent,
    TextContent,
    TextResourceContents,
)

from mcplane.audit.chain import canonical, sha256_hex
from mcplane.audit.entry import _plain_result, result_sha256


def _text(text: str) -> TextContent:
    return TextContent(type="text", text=text)


PLAIN = [
    CallToolResult(content=[]),
    CallToolResult(content=[_text("hello")]),
    CallToolResult(content=[_text("a"), _text('b\n"c"')], is_error=True),
    CallToolResult(content=[_text("\ud800 lone surrogate"), _text("nul \x00 and é ☃ 𝄞")]),
    CallToolResult.model_validate({"content": [{"type": "text", "text": "x"}], "isError": False}),
    CallToolResult(content=[_text("x")], structured_content={"result": "x"}),
    CallToolResult(content=[], structured_content={}),
    CallToolResult(
        content=[_text("x")],
        structured_content={"a": None, "b": [1, 2.5, True, None, {"c": "\ud800"}], "n": float("nan"), "i": -(2**70)},
    ),
]
OTHER = [
    CallToolResult(content=[_text("x")], structured_content={"when": (1, 2)}),
    CallToolResult(content=[_text("x")], structured_content={"raw": b"\x00\xff"}),
    CallToolResult(content=[_text("x")], structured_content={1: "non-str key"}),
    CallToolResult(content=[_text("x")], structured_content={"set": {1, 2}}),
    CallToolResult(content=[_text("x")], structured_content={"many": list(range(300))}),
    CallToolResult(content=[_text("x")], structured_content=["not", "a", "dict"]),
    CallToolResult.model_validate(
        {"content": [{"type": "text", "text": "x"}], "_meta": {"mcplane/error": {"code": "boom"}}, "isError": True}
    ),
    CallToolResult(content=[TextContent(type="text", text="x", annotations=Annotations(priority=0.5))]),
    CallToolResult(content=[TextContent(type="text", text="x", _meta={"k": 1})]),
    CallToolResult(content=[ImageContent(type="image", data="aGk=", mime_type="image/png")]),
    CallToolResult(
        content=[
            EmbeddedResource(type="resource", resource=TextResourceContents(uri="file:///a", text="a")),
        ]
    ),
    GetPromptResult(messages=[]),
    {"content": [{"type": "text", "text": "x"}], "isError": False, "resultType": "complete"},
    "hello",
    None,
]


@pytest.mark.parametrize("result", PLAIN)
def test_a_plain_result_is_hashed_without_pydantic_and_to_the_same_digest(result: Any) -> None:
    assert _plain_result(result) is not None
    assert result_sha256(result) == sha256_hex(canonical(result))


@pytest.mark.parametrize("result", OTHER)
def test_any_other_result_is_hashed_as_before(result: Any) -> None:
    assert _plain_result(result) is None
    assert result_sha256(result) == sha256_hex(canonical(result))


@given(st.lists(st.text(), max_size=4), st.booleans())
def test_plain_results_of_any_text_hash_as_their_dump(texts: list[str], is_error: bool) -> None:
    result = CallToolResult(content=[_text(text) for text in texts], is_error=is_error)
    assert _plain_result(result) is not None
    assert result_sha256(result) == sha256_hex(canonical(result))


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=24,
)


@given(st.dictionaries(st.text(max_size=8), _JSON, max_size=4), st.lists(st.text(), max_size=2))
def test_plain_structured_content_hashes_as_the_dump(structured: dict[str, Any], texts: list[str]) -> None:
    result = CallToolResult(content=[_text(text) for text in texts], structured_content=structured)
    assert _plain_result(result) is not None
    assert result_sha256(result) == sha256_hex(canonical(result))


@given(
    st.dictionaries(
        st.text(max_size=8),
        st.recursive(
            _JSON | st.binary() | st.tuples(st.integers()) | st.frozensets(st.integers(), max_size=3),
            lambda children: (
                st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
            ),
            max_leaves=12,
        ),
        max_size=4,
    )
)
def test_any_structured_content_hashes_as_the_dump(structured: dict[str, Any]) -> None:
    result = CallToolResult(content=[_text("x")], structured_content=structured)
    assert result_sha256(result) == sha256_hex(canonical(result))
