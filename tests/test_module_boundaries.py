"""No mcplane module imports another mcplane module's private (``_``-prefixed) names.

A leading underscore says "only this module relies on me": free to rename, change or drop. An
import from elsewhere breaks that promise silently, so a helper two modules need gets a public
name in a home that fits it instead. The walk covers imports inside functions too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import mcplane

SOURCE = Path(mcplane.__file__).parent

ALLOWED_MODULES = frozenset({"mcplane._version"})
"""Modules whose underscore names are meant for the whole package (the version string)."""


def module_name(path: Path, package: Path) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def private_imports(path: Path, package: Path = SOURCE) -> list[str]:
    """``file:line: from X import _y`` for every private name ``path`` takes from another mcplane module."""
    importer = module_name(path, package)
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if not isinstance(node, ast.ImportFrom) or node.level or node.module is None:
            continue
        source = node.module
        if source != "mcplane" and not source.startswith("mcplane."):
            continue
        if source == importer or source in ALLOWED_MODULES:
            continue
        for alias in node.names:
            if alias.name.startswith("_"):
                where = f"{path.relative_to(package.parent).as_posix()}:{node.lineno}"
                found.append(f"{where}: from {source} import {alias.name}")
    return found


def test_no_module_imports_another_modules_private_names() -> None:
    offenders = [line for path in sorted(SOURCE.rglob("*.py")) for line in private_imports(path)]
    assert offenders == []


def test_the_check_sees_a_private_import_inside_a_function(tmp_path: Path) -> None:
    package = tmp_path / "mcplane"
    package.mkdir()
    module = package / "example.py"
    module.write_text("def f():\n    from mcplane.config import (\n        load_config,\n        _hidden,\n    )\n")
    assert private_imports(module, package) == ["mcplane/example.py:2: from mcplane.config import _hidden"]
