"""Helpers for the versions and reload tests: versioned upstream entries, sequences, polling."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest
import yaml
from mcp_types import CallToolResult

from tests.conftest import REPO_ROOT

VERSIONED_APP = Path(__file__).with_name("versioned_app.py")
T = TypeVar("T")


def users_upstream(version: str, **env: str) -> dict[str, Any]:
    """An upstream entry: ``versioned_app.py`` over stdio answering as ``version``."""
    command = {
        "command": sys.executable,
        "args": ["-m", "mcplane.cli", "run", str(VERSIONED_APP)],
        "cwd": str(REPO_ROOT),
        "env": {"USERS_VERSION": version, **env},
    }
    return {"endpoints": [command]}


def versioned(default: str = "v1", **entry: Any) -> dict[str, Any]:
    """A ``versions`` entry for ``users__fetch_user`` served by ``users_v1`` and ``users_v2``."""
    return {
        "versions": {"v1": {"upstream": "users_v1"}, "v2": {"upstream": "users_v2", "tool": "fetch_user"}},
        "default": default,
        **entry,
    }


def write_config(path: Path, tree: dict[str, Any]) -> None:
    """Write beside, then rename into place (what an operator's tooling should do)."""
    scratch = path.with_suffix(".tmp")
    scratch.write_text(yaml.safe_dump(tree), encoding="utf-8")
    scratch.replace(path)


def sequence(values: Iterable[float]) -> Callable[[], float]:
    """A random source that returns ``values`` in order (and fails the test when it runs out)."""
    it = iter(values)

    def draw() -> float:
        try:
            return next(it)
        except StopIteration:
            pytest.fail("the router drew more random numbers than the test expected")

    return draw


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def text(result: CallToolResult) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)


def served_by(result: CallToolResult) -> str | None:
    meta: Any = result.meta or {}
    return meta.get("mcplane/version")


async def eventually(probe: Callable[[], Any], *, seconds: float = 30.0, what: str = "the condition") -> Any:
    """Await ``probe()`` until it returns something other than ``None`` (fail after ``seconds``)."""
    with anyio.move_on_after(seconds):
        while True:
            found = await probe()
            if found is not None:
                return found
            await anyio.sleep(0.02)
    pytest.fail(f"{what} did not happen within {seconds:g} s")
