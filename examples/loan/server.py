"""A multi-step loan flow whose progress lives in ``ctx.state``: fetch user → check credit → decide.

Each step is its own tool call and may land on any replica: the steps find what the earlier
ones did in the conversation's state (memory by default; Redis with ``mcplane.yaml`` here, so
replicas share it). A step called out of order fails with ``invalid_arguments`` naming the
step that must come first.

    mcplane run examples/loan/server.py --transport http --config examples/loan/mcplane.yaml

Clients send the conversation id in ``_meta["mcplane/conversation"]`` on every step.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from mcplane import Context, Plane
from mcplane.errors import InvalidArguments, NotFound

plane = Plane("loan")

USERS: dict[str, dict[str, Any]] = {
    "u1": {"id": "u1", "name": "Ada", "income": 120_000, "credit_score": 780},
    "u2": {"id": "u2", "name": "Linus", "income": 48_000, "credit_score": 560},
}
"""Stands in for the user service and the credit bureau."""
MIN_SCORE = 650
MAX_SHARE_OF_INCOME = 0.5


class Decision(BaseModel):
    user_id: str
    amount: int
    decision: str
    reason: str


def _out_of_order(step: str, first: str) -> InvalidArguments:
    return InvalidArguments(
        f"{step} needs {first} to run first in this conversation",
        details={"step": step, "missing_step": first},
    )


@plane.tool()
async def fetch_user(user_id: str, ctx: Context) -> dict[str, Any]:
    """Step 1: load the applicant and start (or restart) the application."""
    user = USERS.get(user_id)
    if user is None:
        raise NotFound(f"no user {user_id!r}")
    await ctx.state.set("application", {"step": "fetched", "user": user})
    await ctx.state.delete("decision")
    return {"id": user["id"], "name": user["name"]}


@plane.tool()
async def check_credit(ctx: Context) -> dict[str, Any]:
    """Step 2: score the applicant fetched in step 1."""

    def advance(application: dict[str, Any] | None) -> dict[str, Any]:
        if application is None:
            raise _out_of_order("check_credit", "fetch_user")
        score = application["user"]["credit_score"]
        return {**application, "step": "credit_checked", "credit": {"score": score, "good": score >= MIN_SCORE}}

    application = await ctx.state.update("application", advance)
    await ctx.state.incr("credit_checks")  # how often the bureau was asked in this conversation
    return application["credit"]


@plane.tool()
async def decide(amount: int, ctx: Context) -> Decision:
    """Step 3: approve or deny ``amount``; the first decision of a conversation is final."""
    application = await ctx.state.get("application")
    if application is None:
        raise _out_of_order("decide", "fetch_user")
    if application["step"] != "credit_checked":
        raise _out_of_order("decide", "check_credit")
    user, credit = application["user"], application["credit"]
    if not credit["good"]:
        decision = Decision(user_id=user["id"], amount=amount, decision="denied", reason="credit score too low")
    elif amount > user["income"] * MAX_SHARE_OF_INCOME:
        decision = Decision(user_id=user["id"], amount=amount, decision="denied", reason="amount too high")
    else:
        decision = Decision(user_id=user["id"], amount=amount, decision="approved", reason="ok")
    if not await ctx.state.set("decision", decision.model_dump(), if_absent=True):
        return Decision.model_validate(await ctx.state.get("decision"))  # decided already: the same answer
    return decision
