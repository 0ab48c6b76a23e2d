"""Redis commands per call, per layer: ``INFO commandstats`` deltas on a private ``redis-server``.

::

    python scripts/testbed_redis_ops.py [--calls 2000] [--out redis-ops.json]

One replica of the test bed app (``deploy/testbed/app.py``) behind nginx, its Redis a private
``redis-server`` (nothing else talks to it), so every command counted is the replica's. Each
scenario runs ``--calls`` calls of one tool and divides each command's count by the calls:

- ``none``: ``slow_report`` (no Redis-backed layer): the floor;
- ``rate_limit``: ``echo`` with ``rate_limit: 1000000/second`` (never refuses);
- ``cache_miss``: ``catalog`` with ``cache_ttl: 60s``, arguments unique per call;
- ``rate_limit+cache_hit``: ``quota_lookup`` (rate limit and cache; 8 distinct arguments: hits);
- ``budget``: ``slow_report`` with a ``budget`` section on Redis (a second test bed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from testbed import PrivateRedis, TestBed
from testbed_load import Load

SCENARIOS = [
    ("none", "slow_report"),
    ("rate_limit", "echo"),
    ("cache_miss", "catalog"),
    ("rate_limit+cache_hit", "quota_lookup"),
]


def commandstats(store: PrivateRedis) -> dict[str, int]:
    client = store.client()
    try:
        stats: dict[str, Any] = client.info("commandstats")
    finally:
        client.close()
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


async def _calls(bed: TestBed, tool: str, calls: int) -> int:
    load = Load(bed.lb_url, bed.api_keys[0], "2026", 8, f"ops-{tool}", tools=[tool])
    load.calls_left = calls
    result = await load.run(3600.0, 0.0)
    if result.errors:
        raise RuntimeError(f"{tool}: {result.errors} errors, e.g. {result.error_samples[:2]}")
    return sum(result.outcomes.values())


def measure(bed: TestBed, store: PrivateRedis, scenarios: list[tuple[str, str]], calls: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, tool in scenarios:
        asyncio.run(_calls(bed, tool, 50))  # warm-up: connections, scripts loaded
        before = commandstats(store)
        done = asyncio.run(_calls(bed, tool, calls))
        after = commandstats(store)
        per_call = {cmd: round((after[cmd] - before.get(cmd, 0)) / done, 3) for cmd in after}
        per_call = {cmd: n for cmd, n in per_call.items() if n and cmd not in ("info",)}
        out[name] = {
            "tool": tool,
            "calls": done,
            "per_call": per_call,
            "total_per_call": round(sum(per_call.values()), 3),
        }
        print(json.dumps({name: out[name]}), flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="mcplane-redis-ops-") as tmp:
        store = PrivateRedis(Path(tmp) / "redis")
        store.start()
        try:
            tools = {"echo": {"rate_limit": "1000000/second"}, "catalog": {"cache_ttl": "60s"}}
            with TestBed(
                Path(tmp) / "a", replicas=1, redis_url=store.url, quota_limit="1000000/second", extra_tools=tools
            ) as bed:
                results.update(measure(bed, store, SCENARIOS, args.calls))
            budget = "budget:\n  limit: 1000000000\n  backend: redis\n"
            with TestBed(Path(tmp) / "b", replicas=1, redis_url=store.url, extra=budget) as bed:
                results.update(measure(bed, store, [("budget", "slow_report")], args.calls))
        finally:
            store.stop()
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
