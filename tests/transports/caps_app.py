"""A plane for the connection-cap tests: ``block`` waits until ``release`` is called."""

from __future__ import annotations

import anyio

from mcplane import Plane

plane = Plane("caps")
_released = anyio.Event()


@plane.tool(timeout="30s")
async def block() -> str:
    """Waits until another call releases it."""
    await _released.wait()
    return "released"


@plane.tool()
def release() -> str:
    _released.set()
    return "ok"


@plane.tool()
def add(a: int, b: int) -> int:
    return a + b
