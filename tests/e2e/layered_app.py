"""The Plane the layered end-to-end tests serve with a ``mcplane.yaml`` (tests/e2e/test_layers.py).

Every layer comes from the config file the test writes; the decorators here only declare what
code would (a generous timeout the file tightens, roles, a rate limit, a cost). Tools count
their own executions so a test can tell a cached answer from a fresh one and a refused call
from one that ran.
"""

from __future__ import annotations

import os
from collections import Counter
from datetime import datetime

import anyio

from mcplane import Context, Plane
from mcplane.errors import NotFound
from mcplane.types import NonBlank

plane = Plane("layered", instructions="Every layer configured from mcplane.yaml.")

executions: Counter[str] = Counter()
"""Times each tool body ran in this process (keyed by tool, or by tool and argument)."""


@plane.tool(timeout="3s")
async def whoami(ctx: Context) -> dict[str, object]:
    """Who the pipeline says is calling."""
    principal = ctx.principal
    return {
        "subject": principal.subject,
        "roles": sorted(principal.roles),
        "auth_method": principal.claims.get("auth_method"),
        "api_key_id": principal.claims.get("api_key_id"),
        "issuer": principal.claims.get("iss"),
    }


@plane.tool()
def echo(text: str) -> str:
    """Allowed for everyone by the file although its default is deny."""
    return text


@plane.tool()
def admin_stats() -> str:
    """Only the file's ``admin_*`` rule guards it."""
    return "stats"


@plane.tool(roles=["ops"])
def ops_restart() -> str:
    """Only the decorator's ``roles=`` guards it (no file rule matches)."""
    return "restarted"


@plane.tool()
def internal_debug() -> str:
    """No rule in the file and no roles in code: ``default: deny`` keeps everyone out."""
    return "debug"


@plane.tool(timeout="5s")
async def slow_report() -> str:
    """Declares 5 s in code; the file's ``slow_*: {timeout: 100ms}`` wins."""
    executions["slow_report"] += 1
    await anyio.sleep(2)
    return "finished"


@plane.tool(rate_limit="5/minute")
def limited() -> str:
    """Five calls a minute per principal, counted in Redis across every process."""
    return "ok"


@plane.tool(read_only=True)
def counted(key: str) -> int:
    """A read-only tool: cached by ``cache: {enabled: true}``; returns how often it really ran."""
    executions[f"counted:{key}"] += 1
    return executions[f"counted:{key}"]


@plane.tool(cost=400)
def pricey() -> int:
    """Costs 400 budget units per call; returns how often it really ran."""
    executions["pricey"] += 1
    return executions["pricey"]


@plane.tool()
def login(username: str, password: str) -> str:
    """Takes a secret argument: the audit log must hold only its hash."""
    return f"welcome {username}"


@plane.tool()
def fail_politely() -> str:
    """A tool error the tool chose (audited as an error outcome)."""
    raise NotFound("no such report")


@plane.tool()
async def explode() -> str:
    """Crashes with the config's secret in the exception text."""
    raise RuntimeError(f"cannot connect with key {os.environ['LAYERED_APP_SECRET']}")


@plane.tool(timeout="10s")
async def deadline_info(ctx: Context) -> dict[str, object]:
    """The deadline this call sees, and what it would hand on to a call it makes."""
    return {"remaining": ctx.remaining(), "propagation_meta": ctx.propagation_meta()}


@plane.tool(timeout="10s")
async def wait_for(seconds: float) -> str:
    """Sleeps: longer than the caller's deadline means ``deadline_exceeded``."""
    await anyio.sleep(seconds)
    return "done"


@plane.tool()
def schedule(when: datetime, title: NonBlank) -> str:
    """Seed validation cases: an ISO 8601 date-time and a non-blank string."""
    return f"{title} at {when.isoformat()}"
