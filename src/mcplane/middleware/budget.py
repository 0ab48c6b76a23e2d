"""The ``budget`` slot: units a principal (and optionally a session) may spend per window.

Tool calls only. Each call is charged before the tool runs; a call that would take any budget
over its limit is refused with :class:`~mcplane.errors.BudgetExceeded` and the tool never runs
(``retry_after_ms`` is the time until the tightest window ends, ``details`` tell the scope, limit,
remaining units and the cost asked).

Policy field read from ``call.policy``:

``cost``
    An int >= 0: the units this tool costs per call, charged up front, nothing after.
    ``0`` makes the tool free (no budget check at all).

When a tool declares no ``cost``, it is charged an estimate of tokens:

- *before* the call: ``max(1, len(canonical JSON of the arguments) // 4)``, checked
  all-or-nothing like a declared cost (at least 1, so an exhausted budget stops every call);
- *after* the call (when :attr:`BudgetOptions.charge_results`): ``len(canonical JSON of the
  result) // 4``, charged unconditionally with ``BudgetStore.charge``. The answer was already
  produced, so this part may take a budget past its limit; the overdraft makes the *next* call
  refused until the window ends. A call that raises is not charged for a result.

Budgets: one per principal (tenant and subject) with :attr:`BudgetOptions.limit`, and, when
:attr:`BudgetOptions.session_limit` is set and the call has a transport session
(``call.context.session_id``), one per session. Both share the principal's hash tag and are
spent in one atomic step. A window opens with the first spend and lasts ``window``.

When the backend is unreachable, calls fail with ``dependency_unavailable`` unless
``fail_open`` (then they run unmetered and a warning is logged). A failure to charge for a
result after the call is logged and never fails the call.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from mcplane.backends.budget import BudgetStore
from mcplane.backends.keys import tag_for
from mcplane.errors import BudgetExceeded, ConfigError, DependencyUnavailable
from mcplane.middleware.cache import canonical_json
from mcplane.pipeline import Call, CallNext
from mcplane.policy import parse_duration

__all__ = ["BudgetMiddleware", "BudgetOptions", "estimate_tokens"]

logger = logging.getLogger("mcplane.budget")


@dataclass(frozen=True, slots=True)
class BudgetOptions:
    limit: int
    """Units per principal per window."""
    window: float | str = "1h"
    """Seconds or a duration (``"1h"``, ``"30m"``)."""
    session_limit: int | None = None
    """Units per transport session per window; ``None``: no session budget."""
    charge_results: bool = True
    """For tools without a declared ``cost``, also charge the result's estimated tokens."""
    fail_open: bool = False
    """On an unreachable backend, let calls through (``True``) or answer ``dependency_unavailable``."""

    def __post_init__(self) -> None:
        for name, value in (("limit", self.limit), ("session_limit", self.session_limit)):
            if value is not None and not _is_count(value):
                raise ConfigError(f"budget {name} must be a non-negative int, got {value!r}")
        parse_duration(self.window, field="budget window")


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def estimate_tokens(value: Any) -> int:
    """About four bytes of canonical JSON per token (values JSON cannot hold are counted by ``str``)."""
    if isinstance(value, BaseModel):
        value = value.model_dump(by_alias=True, mode="json", exclude_none=True)
    try:
        data = canonical_json(value)
    except TypeError:
        data = str(value).encode()
    return len(data) // 4


class BudgetMiddleware:
    def __init__(self, options: BudgetOptions, backend: BudgetStore) -> None:
        self.options = options
        self.backend = backend
        self.window = parse_duration(options.window, field="budget window")

    async def __call__(self, call: Call, call_next: CallNext) -> Any:
        if call.kind != "tool":
            return await call_next(call)
        declared = call.policy.cost
        if declared is not None:
            if not _is_count(declared):
                raise ConfigError(f"tool {call.name!r} cost must be a non-negative int, got {declared!r}")
            if declared == 0:
                return await call_next(call)
            cost = declared
        else:
            cost = max(1, estimate_tokens(dict(call.arguments)))
        checks = self._checks(call)
        try:
            decision = await self.backend.try_spend_all(checks, cost, self.window)
        except DependencyUnavailable:
            if not self.options.fail_open:
                raise
            self._warn("check", call)
            return await call_next(call)
        if not decision.allowed:
            limits = dict(checks)
            raise BudgetExceeded(
                f"budget exceeded for tool {call.name!r}",
                retry_after_ms=decision.reset_ms or None,
                details={
                    "scope": "session" if decision.key != checks[0][0] else "principal",
                    "limit": limits[decision.key] if decision.key is not None else None,
                    "remaining": decision.remaining,
                    "cost": cost,
                },
            )
        result = await call_next(call)
        if declared is None and self.options.charge_results:
            tokens = estimate_tokens(result)
            if tokens:
                try:
                    await self.backend.charge(checks, tokens, self.window)
                except DependencyUnavailable:
                    self._warn("result charge", call)
        return result

    def _checks(self, call: Call) -> list[tuple[str, int]]:
        principal = call.context.principal
        key = tag_for("budget", principal.tenant, principal.subject)
        checks = [(key, self.options.limit)]
        session_id = call.context.session_id
        if self.options.session_limit is not None and session_id:
            checks.append((f"{key}:session:{session_id}", self.options.session_limit))
        return checks

    def _warn(self, what: str, call: Call) -> None:
        logger.warning(
            "budget %s failed (backend unavailable) for tool %r; not metered (correlation_id=%s)",
            what,
            call.name,
            call.context.correlation_id,
        )
