"""The scale test bed's Plane: a mix of tools that exercises every shared layer under load.

- ``echo``: fast, idempotent; no shared state (the baseline).
- ``quota_lookup``: rate-limited and cached in Redis (the limit and TTL come from mcplane.yaml,
  which ``scripts/testbed.py`` writes), so every replica shares one quota and one cache.
- ``slow_report``: sleeps (``ms`` milliseconds): holds a call open while others pass; neither
  idempotent nor read-only, so clients never retry it.
- ``catalog``: read-only and idempotent: a client may retry it after a failure.
- ``debug_stats``: what the soak (``scripts/soak.py``) samples inside the process: asyncio tasks,
  threads, open file descriptors and child processes.

Every call is audited to PostgreSQL when the config says so (the test bed's does).
"""

from __future__ import annotations

import asyncio
import os
import threading

import anyio

from mcplane import Plane

plane = Plane("testbed", instructions="The mcplane scale test bed: echo, quota_lookup, slow_report, catalog.")

CATALOG: dict[str, dict[str, object]] = {
    f"sku-{n}": {"sku": f"sku-{n}", "price_cents": 100 + n, "stock": n % 7} for n in range(100)
}


@plane.tool(idempotent=True)
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@plane.tool(read_only=True, idempotent=True)
def quota_lookup(account: str, nonce: str = "") -> dict[str, str]:
    """Look up an account's plan; rate-limited and cached in Redis (policy in mcplane.yaml)."""
    return {"account": account, "plan": "pro" if len(account) % 2 else "free"}


@plane.tool(timeout="5s")
async def slow_report(ms: int = 50, nonce: str = "") -> str:
    """Build a report slowly: sleeps ``ms`` milliseconds (at most 2 s)."""
    await anyio.sleep(min(max(ms, 0), 2000) / 1000)
    return f"report after {ms} ms"


@plane.tool(read_only=True, idempotent=True)
def catalog(sku: str, nonce: str = "") -> dict[str, object]:
    """One catalog item (``sku-0`` ... ``sku-99``); unknown SKUs answer an empty item."""
    return CATALOG.get(sku, {"sku": sku, "price_cents": 0, "stock": 0})


@plane.tool(read_only=True)
async def debug_stats() -> dict[str, int]:
    """Counts of this process's asyncio tasks, threads, open file descriptors and children."""
    return {"asyncio_tasks": len(asyncio.all_tasks()), **_process_counts()}


def _process_counts() -> dict[str, int]:
    return {
        "pid": os.getpid(),
        "threads": threading.active_count(),
        "open_fds": len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else -1,
        "children": _children(),
    }


def _children() -> int:
    """Live child processes (Linux: from /proc; elsewhere -1)."""
    me = str(os.getpid())
    if not os.path.isdir("/proc"):
        return -1
    count = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()
        if fields[1].decode() == me:
            count += 1
    return count
