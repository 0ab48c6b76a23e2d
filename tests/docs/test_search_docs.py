"""docs/search.md says what catalog search does: its YAML loads, its tables are the config model's
keys and the tool's arguments, its bounds and weights are the code's, and the pages that point to
it (README, gateway, configuration) do."""

from __future__ import annotations

import re
from pathlib import Path

from mcplane.gateway import search_index
from mcplane.gateway.config import DiscoveryConfig, load_gateway_config
from mcplane.gateway.search import CALL_SCHEMA, MAX_NAME_CHARS, search_schema

ROOT = Path(__file__).resolve().parents[2]
GUIDE = (ROOT / "docs" / "search.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    return GUIDE.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_the_yaml_example_loads(tmp_path: Path) -> None:
    (text,) = re.findall(r"```yaml\n(.*?)```", GUIDE, flags=re.S)
    file = tmp_path / "gateway.yaml"
    file.write_text(text, encoding="utf-8")
    discovery = load_gateway_config(file).discovery
    assert discovery == DiscoveryConfig(mode="search", always_list=["billing__*"], max_results=10)


def test_the_key_table_is_the_model() -> None:
    table = _section("Configuration")
    rows = dict(re.findall(r"^\| `(\w+)` \| `?([^`|]*)`? \|", table, flags=re.M))
    assert set(rows) == set(DiscoveryConfig.model_fields)
    defaults = DiscoveryConfig()
    assert rows["mode"] == defaults.mode
    assert rows["max_results"] == str(defaults.max_results)
    assert rows["always_list"] == str(defaults.always_list)


def test_the_argument_table_is_the_schema() -> None:
    table = _section("`search_tools`")
    documented = re.findall(r"^\| `(\w+)` \| (required|optional) \|", table, flags=re.M)
    schema = search_schema(10)
    assert {name for name, _ in documented} == set(schema["properties"])
    assert {name for name, kind in documented if kind == "required"} == set(schema["required"])
    assert f"1 to {search_index.MAX_QUERY_CHARS} characters" in table
    assert set(CALL_SCHEMA["properties"]) == {"name", "arguments"}
    assert f"string of 1 to {MAX_NAME_CHARS} characters" in _section("`call_tool`")


def test_the_bounds_and_weights_are_the_code() -> None:
    ranking = _section("How it ranks")
    for field, boost in search_index.BOOSTS.items():
        assert re.search(rf"\*\*{field}\*\* \(x{boost:g}", ranking), field
    assert f"up to {search_index.MAX_QUERY_CHARS} characters" in ranking
    assert f"first {search_index.MAX_QUERY_TERMS} distinct terms" in ranking
    assert f"cut at {search_index.MAX_TEXT_CHARS:,} characters" in ranking
    assert f"parameters at {search_index.MAX_PARAMETERS}" in ranking


def test_the_other_pages_link_here() -> None:
    for page in ("README.md", "docs/gateway.md", "docs/configuration.md", "docs/openapi.md"):
        assert "search.md" in (ROOT / page).read_text(encoding="utf-8"), page


def test_it_links_the_openapi_page() -> None:
    assert "(openapi.md)" in _section("A REST API of a thousand operations")
