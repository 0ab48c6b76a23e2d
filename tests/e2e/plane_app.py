"""The Plane the end-to-end tests serve over stdio, Streamable HTTP and WebSocket.

Run it as ``mcplane run tests/e2e/plane_app.py``. Set ``MCPLANE_TEST_LIFESPAN_LOG`` to a file
path to have the ``ledger`` dependency append ``open`` and ``close`` lines to it.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator

import anyio
from pydantic import BaseModel

from mcplane import Context, Inject, Plane

SECRET = "hunter2-db-password"
"""Appears in an exception message; the tests assert it never reaches a client."""

plane = Plane("e2e", instructions="The plane under end-to-end test.")


class Invoice(BaseModel):
    id: str
    amount_cents: int
    paid: bool


class Ledger:
    """Stands in for a connection pool: counts the calls it served."""

    def __init__(self) -> None:
        self.calls = 0


def _log(line: str) -> None:
    path = os.environ.get("MCPLANE_TEST_LIFESPAN_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as log:
            log.write(line + "\n")


@plane.dependency
async def ledger() -> AsyncIterator[Ledger]:
    _log("open")
    try:
        yield Ledger()
    finally:
        _log("close")


@plane.tool()
def add(a: int, b: int) -> int:
    """Add two integers (a sync tool)."""
    return a + b


@plane.tool(read_only=True)
async def get_invoice(invoice_id: str, paid: bool = False) -> Invoice:
    """Fetch an invoice (an async tool with a model as its output)."""
    await anyio.lowlevel.checkpoint()
    return Invoice(id=invoice_id, amount_cents=1250, paid=paid)


@plane.tool()
async def count_call(ledger: Ledger = Inject(ledger)) -> int:
    """Count one call on the shared ledger; returns the running total."""
    ledger.calls += 1
    return ledger.calls


@plane.tool()
async def steps(n: int, ctx: Context) -> str:
    """Report progress ``n`` times."""
    for i in range(1, n + 1):
        await ctx.report_progress(i, n, f"step {i}")
    return f"{n} steps"


@plane.tool(timeout="3s")
async def whoami(ctx: Context) -> dict[str, object]:
    """The per-call context as the tool sees it."""
    return {
        "subject": ctx.principal.subject,
        "anonymous": ctx.principal.anonymous,
        "correlation_id": ctx.correlation_id,
        "remaining": ctx.remaining(),
        "ledger_calls": ctx.dependency("ledger").calls,
    }


@plane.tool(timeout="100ms")
async def hang() -> str:
    """Waits on an event that never fires."""
    await anyio.Event().wait()
    return "unreachable"


@plane.tool()
async def explode() -> str:
    """Fails with an exception whose text holds a secret."""
    raise RuntimeError(f"cannot connect: password={SECRET}")


@plane.tool()
def noisy() -> str:
    """Prints to stdout, which over stdio must not corrupt the protocol stream."""
    print("stray output from a tool")
    return "ok"


@plane.tool()
async def diagnostics() -> dict[str, int]:
    """Open file descriptors, asyncio tasks and threads of the server process."""
    return {
        "fds": len(os.listdir("/proc/self/fd")),
        "tasks": len(asyncio.all_tasks()),
        "threads": threading.active_count(),
        "fast_served": plane.fast.served,
    }


@plane.resource("config://app", mime_type="application/json")
def app_config() -> str:
    """A static resource."""
    return '{"region": "eu-west-1"}'


@plane.resource("invoices://{invoice_id}")
async def invoice_resource(invoice_id: str) -> str:
    """A resource template."""
    return f"invoice {invoice_id}"


@plane.prompt()
def review(invoice_id: str, tone: str = "neutral") -> str:
    """A prompt with a required and an optional argument."""
    return f"Review invoice {invoice_id} in a {tone} tone."
