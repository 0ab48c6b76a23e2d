"""An mcplane upstream for the gateway tests: counts attempts, can hang until cancelled.

Run as ``mcplane run tests/gateway/upstream_app.py`` (stdio, HTTP or WebSocket).
"""

from __future__ import annotations

import json
import os
from typing import Any

import anyio
from mcp_types import (
    EmptyResult,
    SamplingMessage,
    SubscribeRequestParams,
    TextContent,
    UnsubscribeRequestParams,
)
from pydantic import BaseModel

from mcplane import Context, DeadlineExceeded, Plane
from mcplane.client import Client

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


@plane.tool()
async def stops_early(ctx: Context) -> str:
    """Answers ``deadline_exceeded`` a little before the deadline it was passed: a hop whose timer
    fires before its caller's (a clock ahead, a caller's event loop running late)."""
    left = ctx.remaining()
    if left is None:
        return "no deadline"
    await anyio.sleep(max(0.0, left - EARLY))
    raise DeadlineExceeded()


EARLY = 0.2
"""How long before its deadline ``stops_early`` gives up."""


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


# ----------------------------------------------------------------- relays and identity (test_relay, test_identity)
@plane.tool(read_only=True)
async def count_up(steps: int, ctx: Context) -> str:
    """Reports progress ``1..steps`` of ``steps`` before answering."""
    for step in range(1, steps + 1):
        await ctx.report_progress(step, steps, f"step {step}")
    return f"counted {steps}"


@plane.tool()
async def wait_cancelled(marker: str) -> str:
    """Hangs until cancelled; then writes ``cancelled`` to the file ``marker``."""
    try:
        await anyio.sleep_forever()
    except anyio.get_cancelled_exc_class():
        with open(marker, "w", encoding="utf-8") as file:  # noqa: ASYNC230 - a test marker, written once
            file.write("cancelled")
        raise
    return "unreachable"


class _Name(BaseModel):
    name: str


@plane.tool()
async def ask_name(ctx: Context) -> str:
    """Asks its caller for a name (elicitation) and answers with what came back."""
    answer = await ctx.elicit("What is your name?", _Name)
    if answer.action == "accept":
        return f"hello {answer.data.name}"
    return answer.action


@plane.tool()
async def ask_model(prompt: str, ctx: Context) -> str:
    """Asks its caller's model (``sampling/createMessage``) and answers with what it said."""
    message = SamplingMessage(role="user", content=TextContent(type="text", text=prompt))
    result = await ctx.session.create_message(messages=[message], max_tokens=20, related_request_id=ctx.request_id)
    return result.content.text if isinstance(result.content, TextContent) else "no text"


@plane.tool()
async def roots_of_caller(ctx: Context) -> str:
    """Asks its caller for its roots (``roots/list``)."""
    result = await ctx.session.list_roots()
    return ",".join(str(root.uri) for root in result.roots)


@plane.tool()
async def chatty(ctx: Context) -> str:
    """Logs at two levels to its caller, then answers."""
    await ctx.info("an info line")
    await ctx.warning("a warning line")
    return "said"


subscribed: set[str] = set()


@plane.resource("test://note", mime_type="text/plain")
def note() -> str:
    """A resource callers may subscribe to; ``touch`` says it changed."""
    return "a note"


@plane.request_handler("resources/subscribe", SubscribeRequestParams)
async def subscribe(ctx: Any, params: SubscribeRequestParams) -> EmptyResult:
    subscribed.add(str(params.uri))
    return EmptyResult()


@plane.request_handler("resources/unsubscribe", UnsubscribeRequestParams)
async def unsubscribe(ctx: Any, params: UnsubscribeRequestParams) -> EmptyResult:
    subscribed.discard(str(params.uri))
    return EmptyResult()


@plane.tool()
async def touch(uri: str, ctx: Context) -> str:
    """Tells a 2025-11-25 session that ``uri`` changed, if someone subscribed to it."""
    if uri not in subscribed:
        return "nobody subscribed"
    await ctx.session.send_resource_updated(uri)
    return "touched"


@plane.tool()
async def sprout(name: str) -> str:
    """Registers a new tool ``name`` and announces it to every client, of either era."""

    def extra() -> str:
        return name

    plane.tool(name=name, read_only=True)(extra)
    await plane.notify_list_changed("tools")
    return "sprouted"


@plane.tool()
async def grow(name: str, ctx: Context) -> str:
    """Registers a new tool ``name`` and tells the client its tool list changed."""

    def extra() -> str:
        return name

    plane.tool(name=name, read_only=True)(extra)
    await ctx.session.send_tool_list_changed()
    return "grown"


@plane.tool(read_only=True)
def identity(ctx: Context) -> dict[str, str | None]:
    """What this upstream received of its caller's identity."""
    headers = ctx.headers or {}
    principal = ctx.request_meta.get("mcplane/principal")
    return {
        "authorization": headers.get("authorization"),
        "principal": headers.get("x-mcplane-principal"),
        "roles": headers.get("x-mcplane-roles"),
        "meta": None if principal is None else json.dumps(principal, sort_keys=True),
    }


# ----------------------------------------------------------------- faults and chains (test_faults)
@plane.tool(read_only=True)
def pid() -> int:
    """This upstream's process id (a test kills it)."""
    return os.getpid()


@plane.tool()
async def hop(names: list[str], url: str, record: str, ctx: Context) -> str:
    """One hop of a chain ``names[0] -> names[1] -> ...``, each hop a call of ``hop`` at ``url``.

    Appends ``<name> <mcplane/timeout_ms received>`` to the file ``record``, then calls the next hop
    with :class:`mcplane.Client` (which passes on the time left) or, as the last hop, hangs; a hop
    cancelled by its deadline appends ``<name> cancelled``.
    """
    received = ctx.incoming_timeout()
    _append(record, f"{names[0]} {-1 if received is None else int(received * 1000)}")
    try:
        if len(names) > 1:
            async with Client(url, timeout=ctx.remaining(), retry=None) as client:
                result = await client.call_tool("hop", {"names": names[1:], "url": url, "record": record})
                return "".join(getattr(block, "text", "") for block in result.content)
        await anyio.sleep_forever()
    except anyio.get_cancelled_exc_class():
        _append(record, f"{names[0]} cancelled")
        raise
    return "unreachable"


def _append(path: str, line: str) -> None:
    with open(path, "a", encoding="utf-8") as file:
        file.write(line + "\n")


# ----------------------------------------------------------------- protocol eras (test_eras)
@plane.tool(read_only=True)
def era(ctx: Context) -> str:
    """The era this call came in: the protocol version a 2026-07-28 request carries, else ``legacy``."""
    return str(ctx.request_meta.get("io.modelcontextprotocol/protocolVersion", "legacy"))
