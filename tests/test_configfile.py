"""Config-file reading shared by ``mcplane.yaml`` and ``gateway.yaml``: YAML, overrides, merge, durations."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcplane.configfile import deep_merge, env_overrides, field_duration, read_yaml_file
from mcplane.errors import ConfigError


def test_overrides_spell_a_tree_of_yaml_scalars_and_ignore_other_variables() -> None:
    environ = {"MCPLANE__SERVER__DEFAULT_TIMEOUT": "2s", "MCPLANE__CACHE__ENABLED": "true", "HOME": "/root"}
    assert env_overrides(environ) == {"server": {"default_timeout": "2s"}, "cache": {"enabled": True}}


@pytest.mark.parametrize(
    "environ",
    [
        {"MCPLANE__A": "1", "MCPLANE__A__B": "2"},
        {"MCPLANE__A__B": "2", "MCPLANE__A": "1"},
    ],
)
def test_a_value_and_a_section_at_one_key_are_refused(environ: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="conflicts with another override"):
        env_overrides(environ)


def test_merge_replaces_only_the_keys_given() -> None:
    base = {"server": {"name": "a", "default_timeout": 5}, "cache": {"enabled": False}}
    assert deep_merge(base, {"server": {"default_timeout": 2}}) == {
        "server": {"name": "a", "default_timeout": 2},
        "cache": {"enabled": False},
    }
    assert base["server"] == {"name": "a", "default_timeout": 5}, "the base is not changed"


def test_a_bad_duration_is_a_value_error_for_the_validator_to_place() -> None:
    assert field_duration("500ms") == 0.5
    assert field_duration(None) is None
    with pytest.raises(ValueError, match=r"\S") as caught:
        field_duration("soon")
    assert not isinstance(caught.value, ConfigError)


def test_a_file_that_is_not_a_mapping_is_one_config_error(tmp_path: Path) -> None:
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping at the top level, got list"):
        read_yaml_file(listing)
    with pytest.raises(ConfigError, match="no such config file"):
        read_yaml_file(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: [1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        read_yaml_file(broken)
