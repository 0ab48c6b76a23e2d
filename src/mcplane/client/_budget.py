"""A token budget for one agent, spent by every :class:`~mcplane.client.Client` that holds it.

Units are tokens, estimated as ``len(canonical JSON) // 4`` (the estimate mcplane's server-side
budget uses too), unless the server reports the cost itself.

- *Before* a call the arguments' estimate (at least 1) is reserved; a call that would take the
  budget past its limit raises :class:`~mcplane.BudgetExceeded` and is never sent.
- *After* the call, the result's estimate is charged (error results too: they reach the agent
  as well). This part may take the budget past its limit; the overdraft refuses the next call.
- When the result's ``_meta`` carries ``mcplane/cost`` (a non-negative number of units), that
  is the call's whole cost: it replaces both estimates.

Retries of one call are charged once. A call that raises (a transport failure, a deadline)
keeps only its arguments' reservation.
"""

from __future__ import annotations

import math
from typing import Any

import orjson
from mcp_types import CallToolResult

from mcplane.client._errors import stamp
from mcplane.errors import BudgetExceeded

__all__ = ["COST_META_KEY", "Budget", "estimate_tokens", "reported_cost", "result_tokens"]

COST_META_KEY = "mcplane/cost"
"""Result ``_meta`` key a server may set to the units a call cost."""


def estimate_tokens(value: Any) -> int:
    """About four bytes of canonical JSON (sorted keys, no spaces) per token."""
    try:
        data = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        data = str(value).encode()
    return len(data) // 4


def result_tokens(result: CallToolResult) -> int:
    return estimate_tokens(result.model_dump(by_alias=True, mode="json", exclude_none=True, exclude={"meta"}))


def reported_cost(result: CallToolResult) -> int | None:
    """The ``mcplane/cost`` the server put in the result's ``_meta``, rounded up; ``None`` if absent or bad."""
    meta = result.meta
    value = meta.get(COST_META_KEY) if meta is not None else None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0 or math.isinf(value):
        return None
    return math.ceil(value)


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class Budget:
    """``Budget(tokens=10_000)``: what one agent may spend on tool calls."""

    def __init__(self, tokens: int) -> None:
        if not _is_count(tokens):
            raise ValueError(f"a budget is a non-negative int of tokens, got {tokens!r}")
        self.limit = tokens
        self.used = 0

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)

    def __repr__(self) -> str:
        return f"Budget(tokens={self.limit}, used={self.used})"

    def reserve(self, tokens: int, *, tool: str) -> int:
        """Take ``tokens`` (at least 1) now, or raise :class:`~mcplane.BudgetExceeded` taking nothing."""
        cost = max(1, tokens)
        if self.used + cost > self.limit:
            refused = BudgetExceeded(
                f"the agent's token budget does not cover a call of {tool!r}",
                details={"scope": "client", "limit": self.limit, "used": self.used, "cost": cost},
            )
            raise stamp(refused, correlation_id=None)
        self.used += cost
        return cost

    def settle(self, reserved: int, result: CallToolResult) -> None:
        """Charge what the answer cost, given what was reserved for the call."""
        cost = reported_cost(result)
        if cost is None:
            self.used += result_tokens(result)
        else:
            self.used += cost - reserved
