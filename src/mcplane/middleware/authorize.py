"""The ``authorize`` slot: refuse a call the principal may not make (``forbidden``).

It sits after ``audit``, so a refusal is recorded with who asked and for what. The rules and
their precedence are :class:`mcplane.auth.policy.AccessPolicy`'s; the roles and scopes a tool
declares in code arrive in ``call.policy``.

Attribute rules (CEL, ``authorization.rules``) are evaluated here, for local tools and gateway
upstreams alike, with the call's arguments, the time and the client. Before a rule reads the
arguments they are shape-checked as the ``validate`` slot would (``limits.max_argument_nodes``
and ``max_argument_depth``, the depth capped at :data:`~mcplane.auth.rules.MAX_ARGUMENT_DEPTH`),
so no request can make an evaluation costly: too large is ``invalid_arguments``, as it would be
a few slots later.

A denial by a rule answers the same ``forbidden`` as any other: the rule's name is never sent.
It is noted for the audit record (``denied_by``, see :mod:`mcplane.notes`), counted in
``mcplane_rule_denials_total{rule,outcome}`` and logged as an ``authorization_denied`` event
(INFO when the rule was false; WARNING with the reason when it could not be evaluated, which
denies too: fail closed).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from mcplane.auth.policy import AccessPolicy, CallFacts
from mcplane.auth.rules import MAX_ARGUMENT_DEPTH, client_value
from mcplane.errors import Forbidden
from mcplane.middleware.validate import ArgumentLimits, check_shape
from mcplane.notes import note
from mcplane.observability.logs import EVENT_KEY
from mcplane.pipeline import Call, CallNext

if TYPE_CHECKING:
    from collections.abc import Callable

    from mcplane.audit.forwarded import TrustedProxies
    from mcplane.context import Context, Principal
    from mcplane.observability.metrics import Metrics
    from mcplane.tool_policy import ToolPolicy

__all__ = ["AuthorizeMiddleware"]

logger = logging.getLogger("mcplane.authorize")

_VERDICTS_SIZE = 4096
"""Roles/scopes verdicts remembered per middleware (tool names come from clients: bounded)."""


class AuthorizeMiddleware:
    def __init__(
        self,
        policy: AccessPolicy | None = None,
        *,
        limits: ArgumentLimits | None = None,
        proxies: TrustedProxies | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        """``limits`` bound the arguments a rule reads; ``proxies`` are whose ``X-Forwarded-For``
        names ``client.address``; ``metrics`` count rule denials (none: not counted)."""
        from mcplane.audit.forwarded import TrustedProxies

        self.policy = policy or AccessPolicy()
        limits = limits or ArgumentLimits()
        self.limits = ArgumentLimits(max_nodes=limits.max_nodes, max_depth=min(limits.max_depth, MAX_ARGUMENT_DEPTH))
        self.proxies = proxies or TrustedProxies()
        self.metrics = metrics
        self._verdicts: dict[tuple[int, str, str, int], tuple[Principal, ToolPolicy, bool]] = {}
        """Recent roles/scopes verdicts (the policy is immutable; principals and tool policies are
        handed out as the same objects for the same caller and tool, so they repeat)."""

    async def __call__(self, call: Call, call_next: CallNext) -> Any:
        context = call.context
        principal = context.principal
        policy = self.policy
        if not policy.rules:  # roles and scopes alone: a verdict per (principal, kind, name, code policy)
            code = call.policy
            key = (id(principal), call.kind, call.name, id(code))
            known = self._verdicts.get(key)
            if known is not None and known[0] is principal and known[1] is code:
                allowed = known[2]
            else:
                allowed = policy.role_allows(principal, call.kind, call.name, code)
                verdicts = self._verdicts
                if len(verdicts) >= _VERDICTS_SIZE:
                    del verdicts[next(iter(verdicts))]  # the oldest
                verdicts[key] = (principal, code, allowed)  # holding both keeps their ids unique
            if not allowed:
                raise Forbidden(f"not allowed to use {call.kind} {call.name!r}", details={"kind": call.kind})
            return await call_next(call)
        facts: CallFacts | None = None
        applicable = policy.rules_for(call.kind, call.name) if policy.rules else ()
        if applicable:
            if any("args" in compiled.names for _, compiled in applicable):
                check_shape(call.arguments, self.limits)
            proxies = self.proxies
            facts = CallFacts.of(call.arguments, lambda: client_value(context, proxies))
        decision = policy.decide(principal, call.kind, call.name, call.policy, facts)
        if not decision.allowed:
            if decision.rule is not None:
                self._denied_by_rule(call, decision.rule, decision.outcome, decision.reason)
            raise Forbidden(f"not allowed to use {call.kind} {call.name!r}", details={"kind": call.kind})
        return await call_next(call)

    def _denied_by_rule(self, call: Call, rule: str, outcome: str, reason: str) -> None:
        context = call.context
        note(context, "denied_by", rule)
        if self.metrics is not None:
            self.metrics.rule_denials.labels(rule=rule, outcome=outcome).inc()
        event: dict[str, Any] = {
            "event": "authorization_denied",
            "rule": rule,
            "outcome": outcome,
            "kind": call.kind,
            "name": call.name[:256],
            "subject": context.principal.subject,
            "correlation_id": context.correlation_id,
        }
        if outcome == "error":
            event["reason"] = reason
            logger.warning(
                "rule %r could not be evaluated for %s %r, so it denies: %s",
                rule,
                call.kind,
                call.name[:256],
                reason,
                extra={EVENT_KEY: event},
            )
        else:
            logger.info("rule %r denied %s %r", rule, call.kind, call.name[:256], extra={EVENT_KEY: event})


def listing_client(authorizer: object, context: Callable[[], Context]) -> Callable[[], dict[str, str]]:
    """The ``client`` rules see while a list is filtered: read once, when a rule first asks.

    ``context`` makes the list request's context, only then; ``authorizer`` is the ``authorize``
    slot's middleware, whose trusted proxies decide ``client.address`` (another middleware in
    that slot: no proxy is trusted).
    """
    from mcplane.audit.forwarded import TrustedProxies

    proxies = authorizer.proxies if isinstance(authorizer, AuthorizeMiddleware) else TrustedProxies()
    found: list[dict[str, str]] = []

    def client() -> dict[str, str]:
        if not found:
            found.append(client_value(context(), proxies))
        return found[0]

    return client
