"""The compliance agent: decides whether a trade may go ahead, asking the regulatory agent.

    GATEWAY_URL=http://127.0.0.1:8100/mcp \
        mcplane run examples/multi-agent/compliance_agent.py --transport http --port 8102

It never calls the regulatory agent directly: it asks the gateway for ``regulatory__lookup_regulation``
with :class:`mcplane.client.Client`, inside a step whose deadline is the time its own caller
left it (the gateway's ``mcplane/timeout_ms``), so a slow or dead regulatory agent can never hold
a compliance check longer than its caller waits. Behind the gateway its tool is
``compliance__check_compliance``.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel

from mcplane import Context, Plane
from mcplane.client import Client
from mcplane.errors import CircuitOpen, DependencyUnavailable, NotFound

plane = Plane("compliance", default_timeout="8s")

GATEWAY_URL = os.environ.get("GATEWAY_URL", "http://127.0.0.1:8100/mcp")
LOOKUP = "regulatory__lookup_regulation"
STEP_SECONDS = 5.0
"""The most one check spends asking the regulatory agent (less when its caller waits less)."""


class Check(BaseModel):
    decision: Literal["approve", "reject", "review"]
    reasons: list[str]
    rules: list[str]
    """The rule ids the decision rests on."""


@plane.tool(read_only=True)
async def check_compliance(
    jurisdiction: str, instrument: str, notional: float, ctx: Context, short_sale: bool = False
) -> Check:
    """Whether a trade of ``notional`` in ``instrument`` complies with ``jurisdiction``'s rules."""
    remaining = ctx.remaining()
    budget = STEP_SECONDS if remaining is None else min(STEP_SECONDS, remaining)
    topics = ["position_limits", *(["short_selling"] if short_sale else [])]
    rules: list[dict[str, Any]] = []
    try:
        # One short-lived connection per check keeps the agents independent of start order.
        async with Client(GATEWAY_URL, connect_timeout=budget) as gateway, gateway.step(deadline=budget):
            for topic in topics:
                try:
                    result = await gateway.call_tool(LOOKUP, {"jurisdiction": jurisdiction, "topic": topic})
                except NotFound:
                    continue  # no rule on it: nothing forbids it, a human looks
                rules.append(result.structured_content or {})
    except (DependencyUnavailable, CircuitOpen) as exc:
        raise DependencyUnavailable(
            "the regulatory agent is unavailable; no compliance decision was made",
            details={"dependency": "regulatory"},
        ) from exc
    return _decide(instrument, notional, topics, rules)


def _decide(instrument: str, notional: float, topics: list[str], rules: list[dict[str, Any]]) -> Check:
    reasons: list[str] = []
    decision: Literal["approve", "reject", "review"] = "approve"
    for rule in rules:
        if not rule.get("allowed", True):
            decision = "reject"
            reasons.append(f"{rule['rule_id']}: {rule['summary']}")
        elif (limit := rule.get("max_notional")) is not None and notional > limit:
            decision = "reject" if decision == "reject" else "review"
            reasons.append(f"{rule['rule_id']}: {notional:,.0f} exceeds {limit:,.0f}; needs approval")
    if len(rules) < len(topics) and decision == "approve":
        decision = "review"
        reasons.append("no regulation found for every topic of the trade")
    if not reasons:
        reasons.append(f"{instrument}: within every rule checked")
    return Check(decision=decision, reasons=reasons, rules=[rule["rule_id"] for rule in rules])
