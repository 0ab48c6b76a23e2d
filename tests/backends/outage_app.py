"""A plane whose rate limit, cache and session state all live in Redis (for the outage test)."""

from __future__ import annotations

from mcplane import Context, Plane

plane = Plane("outage")
runs = {"cached": 0}


@plane.tool(rate_limit="1000/minute")
async def limited() -> str:
    return "ok"


@plane.tool(cache_ttl=60)
async def cached(key: str) -> dict[str, int]:
    runs["cached"] += 1
    return {"runs": runs["cached"]}


@plane.tool()
async def remember(ctx: Context) -> int:
    return await ctx.state.incr("calls")
