"""What output guards (and CEL authorization rules) cost per call, measured in one run.

A plane serves the same tools with no ``guards`` section, with ``mask: [secrets, credentials]``
and with ``mask: [all]`` (every kind);
each call goes through the whole pipeline (``plane.dispatch``: errors, metrics, authorize, guard,
validate, timeout, the SDK's tool call), one at a time, so the figure is CPU per call. Results:

* ``small``: a structured result of a few fields (about 200 bytes as text plus its structured copy);
* ``100 KB clean``: 100 KB of text with nothing to find;
* ``100 KB with findings``: the same text with an e-mail address, a card number and a token in it.

Then the same for an authorization rule (``args.amount <= 1000 || "treasury" in principal.roles``)
against no rule. Each cell is the best of five rounds, the variants interleaved (round 1 of each,
then round 2, ...), so a busy machine skews them alike. Prints a markdown table: calls/s with and
without, the ratio, and µs per call::

    python bench/guards.py              # 3 s per cell
    python bench/guards.py --quick      # 0.5 s per cell
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from contextlib import AsyncExitStack
from typing import Any

from mcplane import Plane
from mcplane.config import PlaneConfig
from mcplane.context import Principal
from mcplane.pipeline import Call

WORDS = [
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipiscing",
    "elit",
    "12345",
    "2026-12-06",
    "id:42",
    "value=3.14",
    "Alice",
    "SKU-AB12",
]


def _prose(size: int, seed: int = 7) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(size // 4))[:size]


CLEAN_100K = _prose(100 * 1024)
FINDINGS = " write to alice@example.com, card 4111 1111 1111 1111, token ghp_0123456789abcdefghijABCDEFGHIJ012345 "
DIRTY_100K = CLEAN_100K[:50_000] + FINDINGS + CLEAN_100K[50_000 + len(FINDINGS) :]


def _plane(config: dict[str, Any]) -> Plane:
    plane = Plane("bench-guards", config=PlaneConfig.model_validate(config), tasks=False)

    @plane.tool()
    def small() -> dict[str, Any]:
        return {"id": 42, "name": "widget", "owner": "team-a", "price": 3.5, "tags": ["a", "b"], "ok": True}

    @plane.tool()
    def clean_100k() -> str:
        return CLEAN_100K

    @plane.tool()
    def dirty_100k() -> str:
        return DIRTY_100K

    @plane.tool()
    def refund(amount: float) -> str:
        return f"refunded {amount:g}"

    return plane


async def _rate(plane: Plane, tool: str, arguments: dict[str, Any], seconds: float, principal: Principal) -> float:
    """Calls per second through the whole pipeline, one call at a time."""
    policy, source = plane.policy_for(tool), plane.source_for(tool)

    def call() -> Call:
        context = plane.make_context(None, None, meta={}, principal=principal)
        return Call("tool", tool, arguments, context, policy, source)

    for _ in range(50):  # warm-up: caches, plans, compiled patterns
        await plane.dispatch(call())
    calls = 0
    started = time.perf_counter()
    deadline = started + seconds
    while True:
        for _ in range(20):
            await plane.dispatch(call())
        calls += 20
        now = time.perf_counter()
        if now >= deadline:
            return calls / (now - started)


Row = tuple[str, list[float]]
ROUNDS = 5


async def _measure(
    configs: list[dict[str, Any]], cases: list[tuple[str, str, dict[str, Any]]], seconds: float
) -> list[Row]:
    """Calls/s of each case on a plane per config (the first is the baseline)."""
    caller = Principal("tess", roles=frozenset({"billing"}), tenant="acme")
    planes = [_plane(config) for config in configs]
    rows: list[Row] = []
    async with AsyncExitStack() as stack:
        for plane in planes:
            await stack.enter_async_context(plane.lifespan())
        for label, tool, arguments in cases:
            best = [0.0] * len(planes)
            for _ in range(ROUNDS):  # interleaved rounds, best of each: load on the machine hits all alike
                for index, plane in enumerate(planes):
                    rate = await _rate(plane, tool, arguments, seconds / ROUNDS, caller)
                    best[index] = max(best[index], rate)
            rows.append((label, best))
    return rows


def _table(title: str, variants: list[str], rows: list[Row]) -> list[str]:
    head = "| result | calls/s none | " + " | ".join(f"calls/s {v} | ratio | µs/call {v} (added)" for v in variants)
    lines = [f"### {title}", "", head + " |", "|---|---:|" + "---:|---:|---:|" * len(variants)]
    for label, rates in rows:
        base = rates[0]
        cells = [f"{label}", f"{base:,.0f} ({1e6 / base:,.0f} µs)"]
        for rate in rates[1:]:
            cells += [f"{rate:,.0f}", f"{rate / base:.2f}", f"{1e6 / rate:,.0f} (+{1e6 / rate - 1e6 / base:,.0f})"]
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per cell")
    parser.add_argument("--quick", action="store_true", help="0.5 s per cell (a smoke test)")
    options = parser.parse_args(argv)
    seconds = 0.5 if options.quick else options.seconds
    quiet: dict[str, Any] = {"observability": {"log_level": "warning"}}
    credentials = {**quiet, "guards": {"tools": {"*": {"mask": ["secrets", "credentials"]}}}}
    everything = {**quiet, "guards": {"tools": {"*": {"mask": ["all"]}}}}
    ruled = {
        **quiet,
        "authorization": {
            "rules": {
                "small_refunds": {
                    "tools": ["refund"],
                    "require": 'args.amount <= 1000 || "treasury" in principal.roles',
                }
            }
        },
    }
    cases = [
        ("small (structured, ~200 B)", "small", {}),
        ("100 KB clean", "clean_100k", {}),
        ("100 KB with findings", "dirty_100k", {}),
    ]
    guard_rows = asyncio.run(_measure([quiet, credentials, everything], cases, seconds))
    rule_rows = asyncio.run(_measure([quiet, ruled], [("refund (amount: 10)", "refund", {"amount": 10})], seconds))
    tables = [
        *_table("Output guards vs none", ["secrets+credentials", "all kinds"], guard_rows),
        *_table("A CEL rule over args and roles vs none", ["rule"], rule_rows),
    ]
    print("\n".join(tables))


if __name__ == "__main__":
    main()
