"""What pyproject.toml declares matches what the code imports, and the lock matches pyproject.toml."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "test-py311-linux.txt"


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _project() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _requirements(*extras: str) -> list[Requirement]:
    project = _project()
    declared = [Requirement(text) for text in project["dependencies"]]  # type: ignore[union-attr]
    optional: dict[str, list[str]] = project["optional-dependencies"]  # type: ignore[assignment]
    for extra in extras:
        declared += [Requirement(text) for text in optional[extra]]
    return declared


def _imported_top_level_modules() -> set[str]:
    modules: set[str] = set()
    for path in (ROOT / "src" / "mcplane").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    return modules - set(sys.stdlib_module_names) - {"mcplane", "__future__"}


def test_every_imported_package_is_declared() -> None:
    declared = {_normalise(req.name) for req in _requirements("fast", "otel")}
    providers = importlib.metadata.packages_distributions()
    undeclared: dict[str, list[str]] = {}
    for module in sorted(_imported_top_level_modules()):
        distributions = {_normalise(name) for name in providers.get(module, [])}
        assert distributions, f"{module} is imported but no installed distribution provides it"
        if not distributions & declared:
            undeclared[module] = sorted(distributions)
    assert undeclared == {}


def test_mcp_is_capped_at_the_tested_minor_version() -> None:
    installed = Version(importlib.metadata.version("mcp"))
    for name in ("mcp", "mcp-types"):
        (req,) = [req for req in _requirements() if _normalise(req.name) == name]
        assert req.specifier.contains(installed), f"{req} does not admit the tested {installed}"
        next_minor = Version(f"{installed.major}.{installed.minor + 1}.0")
        assert not req.specifier.contains(next_minor), f"{req} admits the untested {next_minor}"


def _locked() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for line in LOCK.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;]+)", line)
        if match:
            pins[_normalise(match.group(1))] = Version(match.group(3))
    return pins


def test_the_lock_pins_every_declared_requirement_within_its_range() -> None:
    pins = _locked()
    wrong: list[str] = []
    for req in _requirements("test", "fast"):
        if req.marker is not None and not req.marker.evaluate({"sys_platform": "linux", "python_version": "3.11"}):
            continue
        pinned = pins.get(_normalise(req.name))
        if pinned is None or not req.specifier.contains(pinned, prereleases=True):
            wrong.append(f"{req} -> {pinned}")
    assert wrong == []


@pytest.mark.parametrize("name", ["mcp", "redis", "starlette", "pydantic"])
def test_the_environment_under_test_is_the_locked_one(name: str) -> None:
    """The suite runs against the lock (scripts/test-newest.sh runs it against newer sets on purpose)."""
    if "MCPLANE_LOCK" in os.environ:
        pytest.skip("running against another lock on purpose")
    assert Version(importlib.metadata.version(name)) == _locked()[name]
