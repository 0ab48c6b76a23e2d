"""Masking a result: text blocks, embedded text resources and every string of structuredContent,
keys that name credentials, overlaps, and the original never changed."""

from __future__ import annotations

import copy

from mcp_types import (
    CallToolResult,
    EmbeddedResource,
    ImageContent,
    TextContent,
    TextResourceContents,
)

from mcplane.guards import KINDS, Scanner, detectors_for, mask_result, scan_result

SCANNER = Scanner(detectors_for(KINDS))


def test_text_structured_and_embedded_strings_are_masked_in_a_copy() -> None:
    structured = {
        "user": {"email": "alice@example.com", "notes": ["call +44 20 7946 0958", 42, None, True]},
        "password": "correct horse",  # a key that names a credential: masked whatever the value
        "ids": [{"token_type": "Bearer", "access_token": "abc123def456"}],
        "AKIAIOSFODNN7EXAMPLE": "keys are not scanned",
    }
    original = copy.deepcopy(structured)
    result = CallToolResult(
        content=[
            TextContent(type="text", text="mail alice@example.com, key AKIAIOSFODNN7EXAMPLE"),
            ImageContent(type="image", data="YWxpY2VAZXhhbXBsZS5jb20=", mime_type="image/png"),
            EmbeddedResource(
                type="resource",
                resource=TextResourceContents(uri="file:///x", text="Bearer abc123def456", mime_type="text/plain"),
            ),
        ],
        structured_content=structured,
    )
    findings = scan_result(SCANNER, result)
    assert findings.counts == {"email": 2, "aws_access_key_id": 1, "bearer_token": 1, "phone": 1, "api_key": 2}
    masked = mask_result(result, findings)
    text, image, embedded = masked.content
    assert isinstance(text, TextContent)
    assert isinstance(embedded, EmbeddedResource)
    assert text.text == "mail [REDACTED:email], key [REDACTED:aws_access_key_id]"
    assert image == result.content[1]
    assert isinstance(embedded.resource, TextResourceContents)
    assert embedded.resource.text == "Bearer [REDACTED:bearer_token]"
    assert masked.structured_content == {
        "user": {"email": "[REDACTED:email]", "notes": ["call [REDACTED:phone]", 42, None, True]},
        "password": "[REDACTED:api_key]",
        "ids": [{"token_type": "Bearer", "access_token": "[REDACTED:api_key]"}],
        "AKIAIOSFODNN7EXAMPLE": "keys are not scanned",
    }
    assert structured == original  # the tool's own objects are untouched
    assert result.content[0] == TextContent(type="text", text="mail alice@example.com, key AKIAIOSFODNN7EXAMPLE")


def test_a_clean_result_has_no_findings() -> None:
    result = CallToolResult(content=[TextContent(type="text", text="all clear")], structured_content={"n": [1, "a"]})
    assert not scan_result(SCANNER, result)


def test_strings_are_scanned_apart() -> None:
    """Strings are scanned joined by NUL: a finding never spans two of them."""
    result = CallToolResult(
        content=[TextContent(type="text", text="alice@exa"), TextContent(type="text", text="mple.com")],
        structured_content={"a": "-----BEGIN PRIVATE KEY-----", "b": "-----END PRIVATE KEY-----"},
    )
    findings = scan_result(SCANNER, result)
    assert findings.counts == {"private_key": 1}
    masked = mask_result(result, findings)
    assert masked.structured_content == {"a": "[REDACTED:private_key]", "b": "-----END PRIVATE KEY-----"}


def test_overlapping_findings_keep_the_first_and_longest() -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln"
    result = CallToolResult(content=[TextContent(type="text", text=f"Authorization: Bearer {jwt}")])
    findings = scan_result(SCANNER, result)
    assert sum(findings.counts.values()) == 1
    [text] = mask_result(result, findings).content
    assert isinstance(text, TextContent)
    assert text.text in ("Authorization: Bearer [REDACTED:bearer_token]", "Authorization: Bearer [REDACTED:jwt]")


def test_deeply_nested_structured_content_is_walked_without_recursion() -> None:
    deep: object = "alice@example.com"
    for _ in range(5000):
        deep = [deep]
    result = CallToolResult(content=[], structured_content={"deep": deep})
    findings = scan_result(SCANNER, result)
    assert findings.counts == {"email": 1}
    masked: object = mask_result(result, findings).structured_content
    assert isinstance(masked, dict)
    node: object = masked["deep"]
    for _ in range(5000):
        assert isinstance(node, list)
        node = node[0]
    assert node == "[REDACTED:email]"
