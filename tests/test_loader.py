"""Loading the Plane a CLI target names; every bad target is one ConfigError line."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from mcplane import Plane
from mcplane.errors import ConfigError
from mcplane.loader import load_plane
from tests.conftest import E2E_APP, QUICKSTART

ONE_PLANE = 'from mcplane import Plane\nplane = Plane("one")\n'


@pytest.fixture(autouse=True)
def _restore_sys_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))  # the loader puts the target's folder first


def _write(tmp_path: Path, name: str, source: str) -> str:
    path = tmp_path / name
    path.write_text(source, encoding="utf-8")
    return str(path)


def _config_error(target: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_plane(target)
    message = caught.value.message
    assert "\n" not in message
    return message


def test_file_with_one_plane(tmp_path: Path) -> None:
    plane = load_plane(_write(tmp_path, "app.py", ONE_PLANE))
    assert isinstance(plane, Plane)
    assert plane.name == "one"


def test_the_same_plane_under_two_names_is_one_plane(tmp_path: Path) -> None:
    plane = load_plane(_write(tmp_path, "alias.py", ONE_PLANE + "alias = plane\n"))
    assert plane.name == "one"


def test_quickstart_and_e2e_apps_load() -> None:
    assert load_plane(str(QUICKSTART)).name == "billing"
    assert load_plane(f"{E2E_APP}:plane").name == "e2e"


def test_module_and_object() -> None:
    assert load_plane("tests.e2e.plane_app:plane").name == "e2e"


def test_file_importing_a_sibling_module(tmp_path: Path) -> None:
    _write(tmp_path, "helpers_for_loader_test.py", "NAME = 'sibling'\n")
    target = _write(tmp_path, "main.py", "from helpers_for_loader_test import NAME\n" + ONE_PLANE)
    assert load_plane(target).name == "one"


def test_factory_function_is_called(tmp_path: Path) -> None:
    source = "from mcplane import Plane\ndef create():\n    return Plane('made')\n"
    assert load_plane(_write(tmp_path, "factory.py", source) + ":create").name == "made"


def test_nested_attribute(tmp_path: Path) -> None:
    source = "from types import SimpleNamespace\nfrom mcplane import Plane\nns = SimpleNamespace(app=Plane('nested'))\n"
    assert load_plane(_write(tmp_path, "nested.py", source) + ":ns.app").name == "nested"


def test_missing_file(tmp_path: Path) -> None:
    assert _config_error(str(tmp_path / "absent.py")) == f"no such file: {tmp_path / 'absent.py'}"


def test_file_with_no_plane(tmp_path: Path) -> None:
    target = _write(tmp_path, "empty.py", "x = 1\n")
    assert _config_error(target) == f"{target} defines no Plane; name one with {target}:object"


def test_file_with_two_planes(tmp_path: Path) -> None:
    target = _write(tmp_path, "two.py", ONE_PLANE + 'other = Plane("two")\n')
    assert _config_error(target) == f"{target} defines several Planes; name one with {target}:object"


def test_missing_object(tmp_path: Path) -> None:
    target = _write(tmp_path, "app.py", ONE_PLANE)
    assert _config_error(f"{target}:nope") == f"{target} has no object named 'nope'"


@pytest.mark.parametrize(
    ("attr", "expected"),
    [
        ("NUMBER", "is a int, not an mcplane Plane"),
        ("Model", "is a class, not an mcplane Plane"),
        ("needs_args", "is a function that takes arguments, not an mcplane Plane or a factory"),
        ("returns_str", "returns_str() returned a str, not an mcplane Plane"),
        ("explodes", "explodes() failed: ValueError: factory broke"),
    ],
)
def test_object_that_is_not_a_plane(tmp_path: Path, attr: str, expected: str) -> None:
    source = (
        "from pydantic import BaseModel\n"
        "NUMBER = 3\n"
        "class Model(BaseModel):\n    required: int\n"
        "def needs_args(a, b):\n    raise AssertionError('must not be called')\n"
        "def returns_str():\n    return 'plane'\n"
        "def explodes():\n    raise ValueError('factory broke')\n"
    )
    target = _write(tmp_path, "objects.py", source)
    assert _config_error(f"{target}:{attr}").endswith(expected)


def test_module_object_that_is_not_a_plane() -> None:
    assert (
        _config_error("json:dumps")
        == "json:dumps is a function that takes arguments, not an mcplane Plane or a factory"
    )
    assert _config_error("json:decoder") == "json:decoder is a module, not an mcplane Plane"


def test_missing_module() -> None:
    assert (
        _config_error("no_such_package_zz:app") == "no module named 'no_such_package_zz' (target 'no_such_package_zz')"
    )


def test_import_failure_is_one_line(tmp_path: Path) -> None:
    target = _write(tmp_path, "broken.py", "raise RuntimeError('boom')\n")
    assert _config_error(target) == f"importing {target} failed: RuntimeError: boom"


def test_syntax_error_is_one_line(tmp_path: Path) -> None:
    target = _write(tmp_path, "syntax.py", "def f(:\n")
    assert _config_error(target).startswith(f"importing {target} failed: SyntaxError:")


def test_missing_dependency_of_a_file_is_reported(tmp_path: Path) -> None:
    target = _write(tmp_path, "deps.py", "import no_such_dependency_zz\n")
    assert "No module named 'no_such_dependency_zz'" in _config_error(target)
