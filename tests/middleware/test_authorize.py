"""The authorize slot: a refused call raises Forbidden, after audit has seen it; attribute rules
(CEL) deny without saying which, bound the arguments they read, and are counted and logged."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from mcplane.auth import AccessPolicy, AccessRule
from mcplane.auth.rules import MAX_ARGUMENT_DEPTH
from mcplane.context import ANONYMOUS, Context, Principal
from mcplane.errors import Forbidden, InvalidArguments
from mcplane.middleware.authorize import AuthorizeMiddleware
from mcplane.middleware.validate import ArgumentLimits
from mcplane.notes import notes_of
from mcplane.observability.logs import EVENT_KEY
from mcplane.observability.metrics import Metrics
from mcplane.pipeline import Call, CallKind, Pipeline
from mcplane.tool_policy import ToolPolicy

POLICY = AccessPolicy(default="deny", tools={"billing_*": AccessRule(roles=["billing"])})
BILLING = Principal("bea", roles=frozenset({"billing"}))


def _call(name: str, principal: Principal, policy: dict[str, Any] | None = None) -> Call:
    return Call("tool", name, {}, Context(principal=principal), ToolPolicy.from_mapping(policy or {}))


async def _provider(call: Call) -> str:
    return f"ran {call.name}"


async def test_an_allowed_call_runs() -> None:
    middleware = AuthorizeMiddleware(POLICY)
    assert await middleware(_call("billing_charge", BILLING), _provider) == "ran billing_charge"


async def test_a_refused_call_raises_forbidden_and_never_runs() -> None:
    ran: list[str] = []

    async def provider(call: Call) -> None:
        ran.append(call.name)

    middleware = AuthorizeMiddleware(POLICY)
    for call in (_call("billing_charge", ANONYMOUS), _call("delete_all", BILLING)):
        with pytest.raises(Forbidden) as caught:
            await middleware(call, provider)
        assert caught.value.code == "forbidden"
        assert call.name in caught.value.message
    assert ran == []


async def test_decorator_roles_in_the_call_policy_are_enforced() -> None:
    middleware = AuthorizeMiddleware()
    call = _call("charge", ANONYMOUS, {"roles": ["billing"]})
    with pytest.raises(Forbidden):
        await middleware(call, _provider)
    assert await middleware(_call("charge", BILLING, {"roles": ["billing"]}), _provider) == "ran charge"


async def test_resources_and_prompts_are_checked_by_kind() -> None:
    policy = AccessPolicy(resources={"users://*": AccessRule(roles=["support"])})
    middleware = AuthorizeMiddleware(policy)
    resource = Call("resource", "users://7", {}, Context(principal=BILLING))
    with pytest.raises(Forbidden):
        await middleware(resource, _provider)
    prompt = Call("prompt", "users://7", {}, Context(principal=BILLING))  # same name, other kind
    assert await middleware(prompt, _provider) == "ran users://7"


async def test_audit_sits_before_authorize_and_records_the_refusal() -> None:
    records: list[tuple[str, str, str]] = []

    async def audit(call: Call, call_next: Any) -> Any:
        try:
            result = await call_next(call)
        except Exception as exc:
            records.append((call.context.principal.subject, call.name, type(exc).__name__))
            raise
        records.append((call.context.principal.subject, call.name, "ok"))
        return result

    pipeline = Pipeline()
    pipeline.set("audit", audit)
    pipeline.set("authorize", AuthorizeMiddleware(POLICY))
    chain = pipeline.compose(_provider)
    assert await chain(_call("billing_charge", BILLING)) == "ran billing_charge"
    with pytest.raises(Forbidden):
        await chain(_call("billing_charge", ANONYMOUS))
    assert records == [("bea", "billing_charge", "ok"), ("anonymous", "billing_charge", "Forbidden")]


# ------------------------------------------------------------------ attribute rules (CEL)
RULES = AccessPolicy.model_validate(
    {
        "rules": {
            "refunds_under_limit": {
                "tools": ["refund"],
                "require": 'args.amount <= 1000 || "treasury" in principal.roles',
            },
            "finance": {"tools": ["ledger"], "require": 'principal.claims.department == "finance"'},
        }
    }
)


def _metrics() -> Metrics:
    return Metrics(CollectorRegistry())


def _count(metrics: Metrics, rule: str, outcome: str) -> float:
    return metrics.registry.get_sample_value("mcplane_rule_denials_total", {"rule": rule, "outcome": outcome}) or 0.0


async def test_a_rule_denial_is_forbidden_without_the_rules_name_and_noted_for_the_audit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = _metrics()
    middleware = AuthorizeMiddleware(RULES, metrics=metrics)
    assert (
        await middleware(Call("tool", "refund", {"amount": 10}, Context(principal=BILLING)), _provider) == "ran refund"
    )
    call = Call("tool", "refund", {"amount": 5000}, Context(principal=BILLING))
    with caplog.at_level(logging.INFO, logger="mcplane.authorize"), pytest.raises(Forbidden) as caught:
        await middleware(call, _provider)
    wire = caught.value.to_dict("cid")
    assert "refunds_under_limit" not in repr(wire)
    assert wire["details"] == {"kind": "tool"}
    assert notes_of(call.context) == {"denied_by": "refunds_under_limit"}
    assert _count(metrics, "refunds_under_limit", "false") == 1
    [record] = caplog.records
    assert record.levelno == logging.INFO
    assert getattr(record, EVENT_KEY)["rule"] == "refunds_under_limit"


async def test_a_rule_that_cannot_be_evaluated_denies_and_logs_why(caplog: pytest.LogCaptureFixture) -> None:
    metrics = _metrics()
    middleware = AuthorizeMiddleware(RULES, metrics=metrics)
    call = Call("tool", "ledger", {}, Context(principal=BILLING))  # no department claim
    with caplog.at_level(logging.INFO, logger="mcplane.authorize"), pytest.raises(Forbidden):
        await middleware(call, _provider)
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    event = getattr(record, EVENT_KEY)
    assert (event["event"], event["rule"], event["outcome"]) == ("authorization_denied", "finance", "error")
    assert "department" in event["reason"]
    assert _count(metrics, "finance", "error") == 1
    assert notes_of(call.context) == {"denied_by": "finance"}


async def test_a_denial_by_roles_names_no_rule() -> None:
    middleware = AuthorizeMiddleware(POLICY)
    call = _call("billing_charge", ANONYMOUS)
    with pytest.raises(Forbidden):
        await middleware(call, _provider)
    assert notes_of(call.context) == {}


async def test_arguments_a_rule_reads_are_bounded_first() -> None:
    middleware = AuthorizeMiddleware(RULES, limits=ArgumentLimits(max_nodes=10, max_depth=100_000))
    many = Call("tool", "refund", {"amount": 1, "items": list(range(50))}, Context(principal=BILLING))
    with pytest.raises(InvalidArguments, match="more than 10 values"):
        await middleware(many, _provider)
    deep: Any = 1
    for _ in range(300):
        deep = [deep]
    nested = Call("tool", "refund", {"amount": 1, "x": deep}, Context(principal=BILLING))
    deep_enough = AuthorizeMiddleware(RULES, limits=ArgumentLimits(max_depth=100_000))
    with pytest.raises(InvalidArguments, match=f"deeper than {MAX_ARGUMENT_DEPTH} levels"):
        await deep_enough(nested, _provider)
    # a tool no rule reads the arguments of is left to the validate slot
    assert await middleware(Call("tool", "other", {"x": deep}, Context(principal=BILLING)), _provider) == "ran other"


def test_arguments_too_deep_for_the_interpreter_never_reach_it(tmp_path: Path) -> None:
    """The interpreter converts nested values recursively: 20,000 levels would overflow its
    native stack and kill the process. The depth cap answers invalid_arguments instead."""
    script = tmp_path / "deep.py"
    script.write_text(
        textwrap.dedent(
            """
            import anyio
            from mcplane.auth import AccessPolicy
            from mcplane.context import Context
            from mcplane.errors import InvalidArguments
            from mcplane.middleware.authorize import AuthorizeMiddleware
            from mcplane.middleware.validate import ArgumentLimits
            from mcplane.pipeline import Call

            policy = AccessPolicy.model_validate({"rules": {"r": {"tools": ["*"], "require": "size(args) > 0"}}})
            middleware = AuthorizeMiddleware(policy, limits=ArgumentLimits(max_depth=10**9))
            deep = 1
            for _ in range(20_000):
                deep = [deep]

            async def provider(call):
                return "ran"

            async def main():
                try:
                    await middleware(Call("tool", "t", {"x": deep}, Context()), provider)
                except InvalidArguments as exc:
                    print(exc.code)

            anyio.run(main)
            """
        )
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout.strip()) == (0, "invalid_arguments"), done.stderr[-2000:]


KINDS: tuple[CallKind, ...] = ("tool", "resource")


async def test_a_roles_verdict_is_remembered_per_principal_tool_and_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without attribute rules the verdict is a function of (principal, kind, name, code policy):
    each is worked out once, and every call still gets the verdict ``decide`` gives."""
    admin_only = ToolPolicy.from_mapping({"roles": ["admin"]})
    admin = Principal("ada", roles=frozenset({"admin"}))
    cases: list[tuple[Principal, CallKind, str, ToolPolicy, bool]] = [
        (principal, kind, name, code, POLICY.decide(principal, kind, name, code).allowed)
        for principal in (BILLING, ANONYMOUS, admin)
        for kind in KINDS
        for name in ("billing_charge", "delete_all")
        for code in (ToolPolicy.from_mapping({}), admin_only)
    ]
    assert {case[-1] for case in cases} == {True, False}
    checks: list[object] = []
    real = AccessPolicy.role_allows

    def counting(self: AccessPolicy, principal: Principal, kind: Any, name: str, code: Any = None) -> bool:
        checks.append((principal, kind, name, code))
        return real(self, principal, kind, name, code)

    monkeypatch.setattr(AccessPolicy, "role_allows", counting)
    middleware = AuthorizeMiddleware(POLICY)
    for _ in range(3):
        for principal, kind, name, code, allowed in cases:
            call = Call(kind, name, {}, Context(principal=principal), code)
            if allowed:
                assert await middleware(call, _provider) == f"ran {name}"
            else:
                with pytest.raises(Forbidden):
                    await middleware(call, _provider)
    assert len(checks) == len(cases)
    # Another principal object for the same caller (a new token) is decided afresh.
    await middleware(_call("billing_charge", Principal("bea", roles=frozenset({"billing"}))), _provider)
    assert len(checks) == len(cases) + 1
