"""The regulatory agent: knows the rules, nothing else. One typed, read-only tool.

    mcplane run examples/multi-agent/regulatory_agent.py --transport http --port 8101

Behind the gateway its tool is ``regulatory__lookup_regulation``. It never calls anyone.
"""

from __future__ import annotations

from pydantic import BaseModel

from mcplane import Plane
from mcplane.errors import NotFound

plane = Plane("regulatory", default_timeout="2s")


class Regulation(BaseModel):
    rule_id: str
    jurisdiction: str
    topic: str
    summary: str
    max_notional: float | None = None
    """Largest trade allowed without prior approval (``None``: no limit)."""
    allowed: bool = True
    """Whether the activity is allowed at all."""


RULES: dict[tuple[str, str], Regulation] = {
    (rule.jurisdiction, rule.topic): rule
    for rule in (
        Regulation(
            rule_id="EU-MAR-17",
            jurisdiction="EU",
            topic="position_limits",
            summary="Single trades above 5,000,000 EUR need prior approval.",
            max_notional=5_000_000,
        ),
        Regulation(
            rule_id="EU-SSR-12",
            jurisdiction="EU",
            topic="short_selling",
            summary="Uncovered short sales of shares are prohibited.",
            allowed=False,
        ),
        Regulation(
            rule_id="US-REG-SHO",
            jurisdiction="US",
            topic="short_selling",
            summary="Short sales are allowed once the shares are located.",
        ),
        Regulation(
            rule_id="US-FINRA-4210",
            jurisdiction="US",
            topic="position_limits",
            summary="Single trades above 10,000,000 USD need prior approval.",
            max_notional=10_000_000,
        ),
    )
}
"""Stands in for the regulation database the agent would search."""


@plane.tool(read_only=True)
def lookup_regulation(jurisdiction: str, topic: str) -> Regulation:
    """The regulation governing ``topic`` (``position_limits``, ``short_selling``) in ``jurisdiction``."""
    rule = RULES.get((jurisdiction.upper(), topic))
    if rule is None:
        raise NotFound(f"no regulation on {topic!r} in {jurisdiction!r}")
    return rule
