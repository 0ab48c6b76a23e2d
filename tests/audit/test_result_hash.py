"""``result_sha256``: a plain text tool result is hashed from a dict built by hand, not pydantic's dump;
every result, plain or not, hashes to what ``sha256(canonical(result))`` gives (the chain's bytes)."""

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
]
OTHER = [
    CallToolResult(content=[_text("x")], structured_content={"value": "x"}),
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
