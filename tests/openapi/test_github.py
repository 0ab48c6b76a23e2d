"""GitHub's published OpenAPI document (npm @octokit/openapi): each operation a valid tool or skipped with a reason."""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import jsonschema_rs
import pytest
from mcp.shared.tool_name_validation import validate_tool_name

from mcplane.openapi import API, load_api
from tests.conftest import REPO_ROOT
from tests.openapi.conftest import GITHUB_SPEC

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


@pytest.fixture(scope="module")
def github() -> tuple[API, dict[str, Any]]:
    if not GITHUB_SPEC.exists():
        message = f"{GITHUB_SPEC.relative_to(REPO_ROOT)} not found (bash scripts/install-test-deps.sh installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    import json

    document = json.loads(GITHUB_SPEC.read_text())
    return load_api({"spec": str(GITHUB_SPEC)}), document  # checked against the OpenAPI 3.0 JSON Schema


def test_every_operation_is_a_tool_or_skipped_with_a_reason(
    github: tuple[API, dict[str, Any]], record_property: Any
) -> None:
    api, document = github
    operations = sum(1 for item in document["paths"].values() for method in item if method in METHODS)
    assert api.total == operations == len(api.operations) + len(api.skipped)
    assert len(api.operations) > 1000
    assert all(reason for _, reason in api.skipped)
    assert api.base_urls == ["https://api.github.com"]
    reasons = Counter(reason for _, reason in api.skipped)
    record_property("github_operations", operations)
    record_property("github_tools", len(api.operations))
    record_property("github_skipped", dict(reasons))
    print(f"GitHub: {operations} operations, {len(api.operations)} tools, {len(api.skipped)} skipped {dict(reasons)}")


def test_every_tool_name_is_valid_and_every_schema_compiles(github: tuple[API, dict[str, Any]]) -> None:
    api, _ = github
    for name, op in api.operations.items():
        assert validate_tool_name(f"github__{name}").is_valid, name
        assert op.tool.input_schema["type"] == "object"
        for schema in (op.tool.input_schema, op.tool.output_schema):
            if schema is not None:
                jsonschema_rs.Draft202012Validator(schema)


def test_well_known_operations(github: tuple[API, dict[str, Any]]) -> None:
    api, _ = github
    get_repo = api.operations["repos_get"]
    assert (get_repo.method, get_repo.path) == ("get", "/repos/{owner}/{repo}")
    assert get_repo.tool.input_schema["required"] == ["owner", "repo"]
    assert get_repo.tool.annotations is not None
    assert get_repo.tool.annotations.read_only_hint
    create = api.operations["issues_create"]
    assert create.body is not None
    assert "title" in create.tool.input_schema["properties"]
    assert create.tool.annotations is not None
    assert not create.tool.annotations.idempotent_hint
