"""The ``guard`` slot: scan tool results for secrets, credentials and personal data; mask or refuse.

Per tool glob (the ``guards`` section, :class:`~mcplane.guards.GuardsConfig`), each kind found
is either **masked** (replaced by ``[REDACTED:<kind>]`` in text content and in every string of
``structuredContent``) or **refuses** the result: the caller gets ``forbidden`` ("the tool's
result was withheld by an output guard"), not retryable, with no details — nothing says what
was found, or where. ``forbidden`` rather than ``internal_error``: nothing failed, the server's
policy withheld the answer, and a retry will not change it; monitoring counts it with the other
policy refusals (``deploy/`` alerts leave ``forbidden`` out of the server error rate).

Every finding is counted in ``mcplane_guard_hits_total{kind,action}`` and noted for the audit
record by kind and count (``guards``, ``guard_action``; see :mod:`mcplane.notes`), never by value.
Local tools and gateway upstreams alike: the slot sees every ``tools/call`` result.

Where it sits, and why::

    ... audit → authorize → budget → rate_limit → guard → validate → app → cache → timeout → provider

* inside ``audit`` and ``metrics``: a refusal is recorded and counted with its code, and the
  audit's result hash is of what the caller received;
* outside ``validate``: a result over ``limits.max_result_bytes`` has been refused there already,
  so a scan never reads more than that limit;
* outside ``cache``: every answer is scanned, a cache hit too, so a guard added or changed
  applies at the next call even to results a shared cache stored before (the cost: a hit pays
  for its scan; the cache holds results as the tool gave them, ``cache.encryption_keys``
  encrypts them at rest).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mcp_types import CallToolResult

from mcplane.errors import Forbidden
from mcplane.guards import GuardsConfig, Scanner, detectors_for, mask_result, scan_result
from mcplane.notes import note
from mcplane.pipeline import Call, CallNext

if TYPE_CHECKING:
    from mcplane.guards import Action
    from mcplane.observability.metrics import Metrics

__all__ = ["GuardMiddleware"]

_PLANS = 4096
"""Tool names whose plan is remembered (names come from clients: bounded)."""


class _Plan:
    __slots__ = ("actions", "refuses", "scanner")

    def __init__(self, scanner: Scanner, actions: dict[str, Action]) -> None:
        self.scanner = scanner
        self.actions = actions
        self.refuses = any(action == "refuse" for action in actions.values())


class GuardMiddleware:
    def __init__(
        self,
        config: GuardsConfig,
        *,
        secrets: Callable[[], re.Pattern[str] | None] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        """``secrets`` gives the pattern of the configured secret values (read at each scan, so
        a refresh that adds a value is seen); ``metrics`` count findings (none: not counted)."""
        self.config = config
        self.secrets = secrets
        self.metrics = metrics
        self._plans: dict[str, _Plan | None] = {}
        self._counters: dict[tuple[str, str], Any] = {}

    def plan_for(self, tool: str) -> _Plan | None:
        try:
            return self._plans[tool]
        except KeyError:
            pass
        rule = self.config.rule_for(tool)
        plan: _Plan | None = None
        if rule is not None:
            actions = rule.actions()
            if actions:
                plan = _Plan(Scanner(detectors_for(list(actions), self.secrets)), actions)
        if len(self._plans) >= _PLANS:
            self._plans.clear()
        self._plans[tool] = plan
        return plan

    async def __call__(self, call: Call, call_next: CallNext) -> Any:
        if call.kind != "tool":
            return await call_next(call)
        plan = self.plan_for(call.name)
        result = await call_next(call)
        if plan is None or not isinstance(result, CallToolResult):
            return result
        findings = scan_result(plan.scanner, result)
        if not findings:
            return result
        refused = plan.refuses and any(plan.actions[kind] == "refuse" for kind in findings.counts)
        self._record(call, plan, findings.counts, "refuse" if refused else "mask")
        if refused:
            raise Forbidden("the tool's result was withheld by an output guard")
        return mask_result(result, findings)

    def _record(self, call: Call, plan: _Plan, counts: dict[str, int], outcome: str) -> None:
        note(call.context, "guards", dict(sorted(counts.items())))
        note(call.context, "guard_action", outcome)
        if self.metrics is None:
            return
        for kind, count in counts.items():
            action = plan.actions[kind]
            counter = self._counters.get((kind, action))
            if counter is None:
                counter = self._counters[(kind, action)] = self.metrics.guard_hits.labels(kind=kind, action=action)
            counter.inc(count)
