"""Reading a config file the way every mcplane config is read: YAML, then environment overrides.

``mcplane.yaml`` and ``gateway.yaml`` share these steps, so both report a bad file, a clashing
``MCPLANE__SECTION__KEY`` override or a bad duration the same way. The typed models live with
their configs (:mod:`mcplane.config`, :mod:`mcplane.gateway.config`); this module knows only trees.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from mcplane.errors import ConfigError
from mcplane.policy import parse_duration

__all__ = ["ENV_PREFIX", "deep_merge", "env_overrides", "field_duration", "read_yaml_file"]

ENV_PREFIX = "MCPLANE__"


def read_yaml_file(file: Path) -> dict[str, Any]:
    """A config file's top-level mapping; a missing file, bad YAML or another shape is one ``ConfigError``."""
    if not file.is_file():
        raise ConfigError(f"{file}: no such config file")
    try:
        raw: Any = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise ConfigError(f"{file}: {where}not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{file}: expected a mapping at the top level, got {type(raw).__name__}")
    return raw  # pyright: ignore[reportUnknownVariableType]


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """The tree ``MCPLANE__A__B=value`` variables spell (``{"a": {"b": value}}``), values read as YAML scalars.

    Two variables that would put a value and a section at the same key are refused: which one
    was meant cannot be told.
    """
    tree: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        path = [part.lower() for part in key[len(ENV_PREFIX) :].split("__") if part]
        if not path:
            continue
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"environment {key}: conflicts with another override")
        if isinstance(node.get(path[-1]), dict):  # MCPLANE__A after MCPLANE__A__B: as ambiguous as the reverse
            raise ConfigError(f"environment {key}: conflicts with another override")
        node[path[-1]] = yaml.safe_load(raw) if raw else raw
    return tree


def deep_merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` overlaid by ``top``, section by section: a key of ``top`` replaces only that key."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def field_duration(value: Any) -> float | None:
    """A duration (``"2s"``, ``"500ms"``, a number of seconds) for a pydantic validator.

    It raises ``ValueError`` (not ``ConfigError``) so the loader reports the mistake under the
    key path it was found at.
    """
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ConfigError as exc:
        raise ValueError(exc.message.split(": ", 1)[-1]) from None
