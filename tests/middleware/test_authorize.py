"""The authorize slot: a refused call raises Forbidden, after audit has seen it."""

from __future__ import annotations

from typing import Any

import pytest

from mcplane.auth import AccessPolicy, AccessRule
from mcplane.context import ANONYMOUS, Context, Principal
from mcplane.errors import Forbidden
from mcplane.middleware.authorize import AuthorizeMiddleware
from mcplane.pipeline import Call, Pipeline

POLICY = AccessPolicy(default="deny", tools={"billing_*": AccessRule(roles=["billing"])})
BILLING = Principal("bea", roles=frozenset({"billing"}))


def _call(name: str, principal: Principal, policy: dict[str, Any] | None = None) -> Call:
    return Call("tool", name, {}, Context(principal=principal), policy or {})


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
