"""A count of the ``anyio.CancelScope(...)`` made, for tests of slots that must not make one per call."""

from __future__ import annotations

from typing import Any

import anyio
import pytest


def count_cancel_scopes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """From now on (for the test), every ``anyio.CancelScope(...)`` is still made and its arguments recorded
    in the list returned."""
    made: list[tuple[Any, ...]] = []
    real_scope = anyio.CancelScope

    class Counting:
        def __new__(cls, *args: Any, **kwargs: Any) -> Any:
            made.append(args)
            return real_scope(*args, **kwargs)

    monkeypatch.setattr(anyio, "CancelScope", Counting)
    return made
