"""A tool's policy and source: frozen, typed, merged from code and file with the file winning."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from mcp_types import ToolAnnotations

from mcplane import Plane
from mcplane.config import load_config, merge_policy
from mcplane.errors import ConfigError
from mcplane.tasks import TaskPolicy
from mcplane.tool_policy import OFF, ToolPolicy, ToolSource


def _plane() -> Plane:
    plane = Plane("policy-test")

    @plane.tool(timeout="5s", rate_limit=["2/second", "10/minute"], roles=["ops"], cost=3, read_only=True)
    async def export() -> str:
        return "exported"

    return plane


def test_a_policy_is_frozen() -> None:
    policy = ToolPolicy(timeout=1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.timeout = 2.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ToolSource().upstream = "billing"  # type: ignore[misc]


def test_the_decorator_gives_a_typed_policy() -> None:
    policy = _plane().policy_for("export")
    assert policy == ToolPolicy(timeout=5.0, rate_limit=("2/second", "10/minute"), roles=("ops",), cost=3)


def test_the_file_overrides_the_code_key_by_key(tmp_path: Path) -> None:
    plane = _plane()
    path = tmp_path / "mcplane.yaml"
    path.write_text('tools:\n  "exp*": {timeout: 250ms, roles: [admin], cache_ttl: 30s}\n')
    config = load_config(path, environ={})
    plane.configure(config)
    expected = ToolPolicy(timeout=0.25, rate_limit=("2/second", "10/minute"), roles=("admin",), cost=3, cache_ttl=30.0)
    assert plane.policy_for("export") == expected
    assert merge_policy(plane.code_policy("export"), config, "export") == expected
    assert plane.code_policy("export").timeout == 5.0, "the decorator's own policy is kept"


def test_an_unknown_policy_key_is_a_config_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'timout'"):
        ToolPolicy.from_mapping({"timout": "2s"})
    with pytest.raises(ConfigError, match="'upstream'"):
        ToolPolicy(timeout=1.0).overlay({"upstream": "billing"})  # what a tool is, not its policy
    path = tmp_path / "mcplane.yaml"
    path.write_text("tools:\n  search: {timout: 2s}\n")
    with pytest.raises(ConfigError, match="timout"):
        load_config(path, environ={})


def test_the_keyword_form_is_normalized() -> None:
    policy = ToolPolicy.from_mapping({"timeout": "250ms", "cache_ttl": "5m", "roles": "ops", "rate_limit": None})
    assert policy == ToolPolicy(timeout=0.25, cache_ttl=300.0, roles=("ops",), rate_limit=OFF)
    assert ToolPolicy.from_mapping({"cache_ttl": 0}).cache_ttl == 0.0
    assert ToolPolicy.from_mapping({"timeout": None}).timeout_or(5.0) is None, "an explicit None: no timeout"


def test_the_timeout_falls_back_to_the_default_unless_unbounded() -> None:
    assert ToolPolicy().timeout_or(5.0) == 5.0
    assert ToolPolicy(timeout=2.0).timeout_or(5.0) == 2.0
    assert ToolPolicy(unbounded=True).timeout_or(5.0) is None
    assert ToolPolicy(timeout=2.0, unbounded=True).timeout_or(5.0) == 2.0


def test_what_a_tool_is_goes_to_its_source_not_its_policy() -> None:
    plane = Plane("source-test")
    schema = {"type": "object", "properties": {"q": {"type": "string"}}}

    @plane.tool(input_schema=schema, idempotent=True, task=True)
    async def search(q: str) -> str:
        return q

    source = plane.source_for("search")
    assert source == ToolSource(
        json_schema=schema, hand_written_schema=True, annotations=ToolAnnotations(idempotent_hint=True)
    )
    assert plane.policy_for("search") == ToolPolicy(task=TaskPolicy(mode="optional", after=0.0))
    assert plane.source_for("unknown") == ToolSource()
