"""The typed Plane the interop matrix drives with outside clients (tests/interop/).

Serve it with ``mcplane run tests/interop/typed_app.py --config tests/interop/mcplane.yaml``
(stdio, or ``--transport http``); ``gateway.yaml`` fronts it as the stdio upstream ``typed``.

Every tool has a return type, so every tool lists an ``outputSchema``: a failure of any of them
is the case a strict client (the TypeScript SDK validates ``structuredContent`` against the
schema even on ``isError`` results) must still read as a tool error. Each failing tool meets one
stable error code; ``mcplane.yaml`` adds the layers that need a file (the budget).
"""

from __future__ import annotations

from typing import Literal

import anyio
from mcp.shared.exceptions import MCPError
from mcp_types import ElicitRequest, ElicitRequestFormParams, ElicitResult, InputRequiredResult
from pydantic import BaseModel

from mcplane import Context, Plane
from mcplane.errors import NotFound

SECRET = "interop-secret-7f3a"
"""Appears in a crash's exception text; the matrix asserts no client ever sees it."""

MODERN = "2026-07-28"

plane = Plane("interop-typed", instructions="Typed tools for the interop matrix.")


class Invoice(BaseModel):
    id: str
    amount_cents: int
    paid: bool


class Steps(BaseModel):
    done: int


class CancelStatus(BaseModel):
    key: str
    started: bool
    cancelled: bool


class Greeting(BaseModel):
    action: str
    name: str | None


_started: dict[str, anyio.Event] = {}
_cancelled: dict[str, anyio.Event] = {}


def _events(key: str) -> tuple[anyio.Event, anyio.Event]:
    return _started.setdefault(key, anyio.Event()), _cancelled.setdefault(key, anyio.Event())


# ----------------------------------------------------------------------------------- successes
@plane.tool()
def add(a: int, b: int) -> int:
    """Add two integers (invalid_arguments when one is not an integer)."""
    return a + b


@plane.tool(read_only=True)
async def get_invoice(invoice_id: str, paid: bool = False) -> Invoice:
    """Fetch an invoice; ids starting with ``missing`` are not_found."""
    await anyio.lowlevel.checkpoint()
    if invoice_id.startswith("missing"):
        raise NotFound(f"no invoice {invoice_id!r}")
    return Invoice(id=invoice_id, amount_cents=1250, paid=paid)


@plane.tool()
def report(period: str) -> Invoice:
    """Open here; the gateway's ``authorization`` rule guards ``typed__report`` (forbidden there)."""
    return Invoice(id=f"report-{period}", amount_cents=0, paid=True)


@plane.tool()
def needs_backup() -> Invoice:
    """Succeeds here; ``gateway.yaml`` makes ``typed__needs_backup`` depend on an upstream that is
    down, so through the gateway it is dependency_unavailable."""
    return Invoice(id="backup", amount_cents=0, paid=True)


@plane.tool()
async def steps(n: int, ctx: Context, pause_ms: int = 0) -> Steps:
    """Reports progress ``1..n`` of ``n``, working ``pause_ms`` before each report and before answering."""
    for i in range(1, n + 1):
        await anyio.sleep(pause_ms / 1000)
        await ctx.report_progress(i, n, f"step {i}")
    await anyio.sleep(pause_ms / 1000)
    return Steps(done=n)


class _Name(BaseModel):
    name: str


_ASK = "What is your name?"


@plane.tool()
async def ask_name(ctx: Context) -> Greeting | InputRequiredResult:
    """Asks the caller for a name (elicitation) and answers with the action and the name.

    A 2025-11-25 caller is asked with an ``elicitation/create`` request during the call; a
    2026-07-28 caller gets an ``input_required`` result and calls again with its answer.
    """
    if ctx.protocol_version == MODERN:
        response = (ctx.input_responses or {}).get("name")
        if not isinstance(response, ElicitResult):
            schema = _Name.model_json_schema()
            params = ElicitRequestFormParams(message=_ASK, requested_schema=schema)  # pyright: ignore[reportArgumentType]
            return InputRequiredResult(input_requests={"name": ElicitRequest(params=params)})
        name = (response.content or {}).get("name") if response.action == "accept" else None
        return Greeting(action=response.action, name=None if name is None else str(name))
    answer = await ctx.elicit(_ASK, _Name)
    return Greeting(action=answer.action, name=answer.data.name if answer.action == "accept" else None)


# ----------------------------------------------------------------------------------- failures
@plane.tool(rate_limit="1/hour")
def limited() -> Invoice:
    """One call an hour per principal: the second is rate_limited."""
    return Invoice(id="limited", amount_cents=1, paid=False)


@plane.tool(timeout="0.2s")
async def hang() -> Invoice:
    """Waits on an event that never fires: timeout after 0.2 s."""
    await anyio.Event().wait()
    raise AssertionError("unreachable")


@plane.tool(timeout="10s")
async def slow(ms: int) -> Invoice:
    """Sleeps ``ms``: a caller's tiny ``mcplane/timeout_ms`` makes it deadline_exceeded."""
    await anyio.sleep(ms / 1000)
    return Invoice(id="slow", amount_cents=ms, paid=True)


@plane.tool()
async def crash() -> Invoice:
    """Crashes with a secret in the exception text: internal_error, the text never leaves."""
    raise RuntimeError(f"database refused password {SECRET}")


@plane.tool(roles=["admin"])
def admin_report() -> Invoice:
    """Only the ``admin`` role may call it; the anonymous principal is forbidden."""
    return Invoice(id="admin", amount_cents=0, paid=True)


@plane.tool()
def pricey() -> Invoice:
    """Costs 60 of a budget of 100 a window (``mcplane.yaml``): the second call is budget_exceeded."""
    return Invoice(id="pricey", amount_cents=60, paid=False)


@plane.tool()
def splurge() -> Invoice:
    """Costs more than the whole budget (``mcplane.yaml``): budget_exceeded, and it never runs."""
    return Invoice(id="splurge", amount_cents=100_000, paid=False)


@plane.tool()
def raw_error() -> Invoice:
    """Answers a bare JSON-RPC error with no mcplane error object (a plain server's failure):
    through the gateway that is upstream_error."""
    raise MCPError(code=-32050, message="plain upstream failure")


# ----------------------------------------------------------------------------------- cancellation
@plane.tool(timeout="20s")
async def wait_cancel(key: str) -> Invoice:
    """Waits until the client cancels it; records the cancellation under ``key``."""
    started, cancelled = _events(key)
    started.set()
    try:
        await anyio.sleep_forever()
    except anyio.get_cancelled_exc_class():
        cancelled.set()
        raise
    raise AssertionError("unreachable")


@plane.tool(timeout="10s")
async def cancel_status(key: str, until: Literal["started", "cancelled"], wait_ms: int = 5000) -> CancelStatus:
    """What ``wait_cancel(key)`` has seen, once it has ``started`` or been ``cancelled`` (or after ``wait_ms``)."""
    started, cancelled = _events(key)
    with anyio.move_on_after(wait_ms / 1000):
        await (started if until == "started" else cancelled).wait()
    return CancelStatus(key=key, started=started.is_set(), cancelled=cancelled.is_set())


# ----------------------------------------------------------------------------------- resources, prompts
@plane.resource("config://interop", mime_type="application/json")
def interop_config() -> str:
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
