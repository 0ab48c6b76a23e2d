"""Load the Plane a CLI target names: ``path/to/file.py[:object]`` or ``package.module:object``."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Any

from mcplane.app import Plane
from mcplane.errors import ConfigError

__all__ = ["load_plane"]


def _import_file(path: Path) -> Any:
    if not path.is_file():
        raise ConfigError(f"no such file: {path}")
    module_name = f"_mcplane_target_{abs(hash(path.resolve()))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    sys.path.insert(0, str(path.resolve().parent))
    try:
        spec.loader.exec_module(module)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    return module


def _import_module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"no module named {exc.name!r} (target {name!r})") from None
    except Exception as exc:
        raise ConfigError(f"importing {name} failed: {type(exc).__name__}: {exc}") from exc


def _describe(obj: Any) -> str:
    if inspect.isclass(obj):
        return "class"
    return type(obj).__name__


def _call_factory(target: str, factory: Any) -> Any:
    """A function named as the target is a factory: called with no arguments, it returns the Plane."""
    try:
        inspect.signature(factory).bind()
    except TypeError:
        raise ConfigError(f"{target} is a function that takes arguments, not an mcplane Plane or a factory") from None
    try:
        made = factory()
    except Exception as exc:
        raise ConfigError(f"calling {target}() failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(made, Plane):
        raise ConfigError(f"{target}() returned a {_describe(made)}, not an mcplane Plane")
    return made


def load_plane(target: str) -> Plane:
    """Import the target and return its Plane; a bad target is a one-line ConfigError."""
    source, _, attr = target.partition(":")
    if source.endswith(".py") or "/" in source or Path(source).is_file():
        module = _import_file(Path(source))
    else:
        module = _import_module(source)
    if attr:
        obj: Any = module
        for part in attr.split("."):
            try:
                obj = getattr(obj, part)
            except AttributeError:
                raise ConfigError(f"{source} has no object named {attr!r}") from None
        if inspect.isfunction(obj):
            obj = _call_factory(target, obj)
        if not isinstance(obj, Plane):
            raise ConfigError(f"{target} is a {_describe(obj)}, not an mcplane Plane")
        return obj
    planes = [value for value in vars(module).values() if isinstance(value, Plane)]
    if not planes:
        raise ConfigError(f"{source} defines no Plane; name one with {source}:object")
    if len({id(p) for p in planes}) > 1:
        raise ConfigError(f"{source} defines several Planes; name one with {source}:object")
    return planes[0]
