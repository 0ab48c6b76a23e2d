"""The Plane the operations tests serve: tools that wait for a file the test controls.

``wait_for(path)`` writes ``path + ".started"``, then returns once ``path`` exists: a call the
test can hold in flight (across a SIGTERM) and release. ``wait_for_ctx`` does the same but takes
a ``Context``, so it runs on the SDK's path instead of mcplane's hot path.
"""

from __future__ import annotations

import os

import anyio

from mcplane import Context, Plane

plane = Plane("ops", instructions="Operations under test.")

POLL = 0.01


async def _hold(path: str) -> str:
    await anyio.Path(path + ".started").write_text("started", encoding="utf-8")
    # The test (another process) releases the call by creating the file: there is no event to await.
    while not await anyio.Path(path).exists():  # noqa: ASYNC110
        await anyio.sleep(POLL)
    return "done"


@plane.tool(timeout="60s")
async def wait_for(path: str) -> str:
    """Runs until ``path`` exists (on the hot path)."""
    return await _hold(path)


@plane.tool(timeout="60s")
async def wait_for_ctx(path: str, ctx: Context) -> str:
    """Runs until ``path`` exists (on the SDK's path: it takes a Context)."""
    return await _hold(path)


@plane.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@plane.tool()
def pid() -> int:
    """The serving process's id (which worker answered)."""
    return os.getpid()
