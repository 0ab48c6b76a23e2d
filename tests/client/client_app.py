"""The Plane the client tests call, over Streamable HTTP, WebSocket and stdio.

Run it as ``mcplane run tests/client/client_app.py``. Tools that fail do so for the first
``failures`` calls with the same ``key``, so each test picks a fresh key and reads the count.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import anyio
from mcp_types import CallToolResult, TextContent
from pydantic import BaseModel

from mcplane import (
    CircuitOpen,
    Context,
    DependencyUnavailable,
    Forbidden,
    MCPlaneError,
    Plane,
    RateLimited,
    Timeout,
)
from mcplane.context import TIMEOUT_META_KEY

plane = Plane("client-tests")

_calls: Counter[str] = Counter()
_released: dict[str, anyio.Event] = {}
_ERRORS: dict[str, type[MCPlaneError]] = {
    cls.code: cls for cls in (DependencyUnavailable, RateLimited, Timeout, CircuitOpen, Forbidden)
}


class Seen(BaseModel):
    """What the server saw of the call's ``_meta``."""

    timeout_ms: float | None
    remaining_ms: float | None
    traceparent: str | None


@plane.tool(read_only=True)
async def seen(ctx: Context) -> Seen:
    remaining = ctx.remaining()
    raw = ctx.request_meta.get(TIMEOUT_META_KEY)
    return Seen(
        timeout_ms=float(raw) if raw is not None else None,
        remaining_ms=remaining * 1000 if remaining is not None else None,
        traceparent=ctx.request_meta.get("traceparent"),
    )


def _fail_first(key: str, failures: int, code: str, retry_after_ms: int | None) -> int:
    _calls[key] += 1
    if _calls[key] <= failures:
        raise _ERRORS[code](f"transient failure {_calls[key]} of {failures}", retry_after_ms=retry_after_ms)
    return _calls[key]


@plane.tool(read_only=True)
def flaky_read(key: str, failures: int, code: str = "dependency_unavailable", retry_after_ms: int | None = None) -> int:
    """Read-only: fails the first ``failures`` calls for ``key``, then returns the call count."""
    return _fail_first(key, failures, code, retry_after_ms)


@plane.tool(idempotent=True)
def flaky_put(key: str, failures: int, code: str = "dependency_unavailable", retry_after_ms: int | None = None) -> int:
    """Idempotent (not read-only)."""
    return _fail_first(key, failures, code, retry_after_ms)


@plane.tool()
def flaky_write(
    key: str, failures: int, code: str = "dependency_unavailable", retry_after_ms: int | None = None
) -> int:
    """Neither read-only nor idempotent: never retried unless the caller says so."""
    return _fail_first(key, failures, code, retry_after_ms)


@plane.tool(read_only=True)
def calls(key: str) -> int:
    """How many calls a flaky tool (or ``echo``) took for ``key``."""
    return _calls[key]


@plane.tool()
def echo(key: str, text: str) -> str:
    _calls[key] += 1
    return text


@plane.tool()
def costly() -> CallToolResult:
    """Reports its own cost in the result's ``_meta``."""
    return CallToolResult(content=[TextContent(type="text", text="x" * 400)], _meta={"mcplane/cost": 7})


@plane.tool()
def plain_error() -> CallToolResult:
    """An error result without an mcplane error object, as a plain SDK server answers."""
    return CallToolResult(content=[TextContent(type="text", text="the printer is on fire")], is_error=True)


@plane.tool()
async def hang(key: str) -> str:
    """Ignores its deadline (shielded) until ``release(key)``, so only the client can stop waiting."""
    event = _released.setdefault(key, anyio.Event())
    with anyio.CancelScope(shield=True), anyio.move_on_after(30):
        await event.wait()
    return "released"


@plane.tool()
def release(key: str) -> bool:
    _released.setdefault(key, anyio.Event()).set()
    return True


@plane.tool(read_only=True)
def crash_once(marker: str) -> str:
    """Ends the server process the first time (``marker`` does not exist yet), as a crash would."""
    path = Path(marker)
    if not path.exists():
        path.write_text("crashed\n", encoding="utf-8")
        os._exit(1)
    return "survived"


@plane.tool()
def crash_write(marker: str) -> str:
    """Like ``crash_once`` but not read-only: the client must not retry it."""
    path = Path(marker)
    if not path.exists():
        path.write_text("crashed\n", encoding="utf-8")
        os._exit(1)
    return "survived"
