"""An mcplane upstream for the gateway tests: counts attempts, can hang until cancelled.

Run as ``mcplane run tests/gateway/upstream_app.py`` (stdio, HTTP or WebSocket).
"""

from __future__ import annotations

import anyio

from mcplane import Context, Plane

plane = Plane("upstream", default_timeout=None)
attempts: dict[str, int] = {}


def _count(name: str) -> int:
    attempts[name] = attempts.get(name, 0) + 1
    return attempts[name]


@plane.tool(read_only=True)
def add(a: int, b: int) -> int:
    return a + b


@plane.tool(read_only=True)
async def hang_read() -> str:
    """Read-only and never answers: the gateway may retry it."""
    _count("hang_read")
    await anyio.sleep_forever()
    return "unreachable"


@plane.tool()
async def hang_write() -> str:
    """Not annotated and never answers: the gateway must not retry it."""
    _count("hang_write")
    await anyio.sleep_forever()
    return "unreachable"


@plane.tool(read_only=True)
def attempts_of(name: str) -> int:
    return attempts.get(name, 0)


@plane.tool(read_only=True)
def remaining_ms(ctx: Context) -> int:
    """The deadline this hop received (``-1`` when none)."""
    remaining = ctx.incoming_timeout()
    return -1 if remaining is None else int(remaining * 1000)


@plane.tool(read_only=True)
def traceparent(ctx: Context) -> str:
    return str(ctx.request_meta.get("traceparent", ""))
