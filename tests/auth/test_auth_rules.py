"""Attribute rules (CEL): what compiles, what a rule reads, how a decision is made, and that a
rule that cannot be evaluated denies. The CEL interpreter is the real one."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from mcplane.auth.policy import AccessPolicy, CallFacts, Decision
from mcplane.auth.rules import MAX_SOURCE, RuleError, client_value, compile_rule
from mcplane.config import PlaneConfig
from mcplane.context import ANONYMOUS, Context, Principal

ALICE = Principal(
    "alice",
    roles=frozenset({"billing"}),
    scopes=frozenset({"tools.read"}),
    tenant="acme",
    claims={"department": "finance", "level": 3},
)
TREASURER = Principal("tess", roles=frozenset({"treasury", "billing"}), tenant="acme")
NOON = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)  # a Monday
MIDNIGHT = datetime(2026, 12, 6, 0, 30, tzinfo=UTC)  # a Sunday


def _policy(rules: dict[str, Any], **extra: Any) -> AccessPolicy:
    return AccessPolicy.model_validate({"rules": rules, **extra})


def _facts(arguments: dict[str, Any] | None = None, *, now: datetime = NOON, **client: str) -> CallFacts:
    seen = {"name": "", "version": "", "transport": "http", "address": "", **client}
    return CallFacts(arguments or {}, lambda: dict(seen), now)


REFUNDS = {"refunds": {"tools": ["refund*"], "require": 'args.amount <= 1000 || "treasury" in principal.roles'}}


# ------------------------------------------------------------------ compiling
@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("args.amount <= || true", "column 16: extraneous input '||'"),
        ("args.amount <=\n  1000 ))", "line 2, column 8: mismatched input ')'"),
        ("princpal.roles.size() > 0", "column 1: unknown name 'princpal'"),
        ('"x" in principal.roles && user.admin', "column 27: unknown name 'user'"),
        ("call.name.lowerAscii() == 'x'", "column 11: unknown function 'lowerAscii'"),
        ("max(args.a, 1) > 0", "column 1: unknown function 'max'"),
        ("now.getHours('Europe/Paris') >= 9", "column 5: time zones are not supported"),
        ("args.items.all(x, args.items.exists(y, x == y))", "column 30: a comprehension inside another"),
        ("   ", "is empty"),
        ("(" * 100 + "true" + ")" * 100, "column 97: Recursion limit of 96 exceeded"),
    ],
)
def test_a_rule_that_does_not_compile_says_where(source: str, message: str) -> None:
    with pytest.raises(RuleError) as caught:
        compile_rule(source)
    assert str(caught.value).startswith(message), str(caught.value)


def test_a_long_rule_is_refused() -> None:
    with pytest.raises(RuleError, match=f"longer than {MAX_SOURCE}"):
        compile_rule("true && " * 600 + "true")


def test_names_inside_string_literals_are_not_read_as_names() -> None:
    rule = compile_rule(
        "call.name != 'princpal.lowerAscii(' && args.tags.all(t, t != \"x.all(y, max(1))\") && r'\\q(' != ''"
    )
    assert rule.names == {"call", "args"}
    assert rule.needs_call_facts  # it reads args


def test_what_a_rule_reads() -> None:
    assert compile_rule("principal.tenant == 'acme'").names == {"principal"}
    assert not compile_rule("principal.tenant == 'acme'").reads_claims
    assert compile_rule("principal.claims.department == 'finance'").reads_claims
    assert compile_rule("type(args.a) == int && args.l.exists(x, x > 1)").names == {"args"}
    assert compile_rule("now.getHours() > 7").needs_call_facts is False
    assert compile_rule("client.transport == 'http'").needs_call_facts is True


def test_the_config_names_the_key_of_a_broken_rule() -> None:
    with pytest.raises(ValidationError) as caught:
        PlaneConfig.model_validate({"authorization": {"rules": {"big": {"tools": ["*"], "require": "args.a <="}}}})
    error = caught.value.errors()[0]
    assert error["loc"] == ("authorization", "rules", "big", "require")
    assert "column 10: mismatched input '<EOF>'" in error["msg"]


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"require": "true"}, "a rule names what it applies to"),
        ({"tools": ["*"]}, "Field required"),
        ({"tools": ["*"], "require": "true", "when": "x"}, "Extra inputs are not permitted"),
    ],
)
def test_a_rule_needs_its_globs_and_its_expression(rule: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _policy({"r": rule})


def test_rule_names_are_labels() -> None:
    with pytest.raises(ValidationError, match="rule name 'two words'"):
        _policy({"two words": {"tools": ["*"], "require": "true"}})


# ------------------------------------------------------------------ deciding
def test_a_rule_over_arguments_and_roles_allows_and_denies() -> None:
    policy = _policy(REFUNDS)
    assert policy.decide(ALICE, "tool", "refund", facts=_facts({"amount": 500})).allowed
    assert policy.decide(ALICE, "tool", "refund", facts=_facts({"amount": 999.5})).allowed  # int vs double
    assert policy.decide(ALICE, "tool", "refund", facts=_facts({"amount": 5000})) == Decision(False, "refunds", "false")
    assert policy.decide(TREASURER, "tool", "refund", facts=_facts({"amount": 5000})).allowed
    assert policy.decide(ALICE, "tool", "charge", facts=_facts({"amount": 5000})).allowed  # the rule does not apply


def test_a_rule_that_cannot_be_evaluated_denies_with_its_reason() -> None:
    policy = _policy(REFUNDS | {"typed": {"tools": ["typed"], "require": "args.n + 1 > 0"}})
    missing = policy.decide(ALICE, "tool", "refund", facts=_facts({}))
    assert (missing.allowed, missing.rule, missing.outcome) == (False, "refunds", "error")
    assert "amount" in missing.reason
    wrong_type = policy.decide(ALICE, "tool", "typed", facts=_facts({"n": "one"}))
    assert (wrong_type.allowed, wrong_type.outcome) == (False, "error")
    overflow = policy.decide(ALICE, "tool", "typed", facts=_facts({"n": 2**63 - 1}))
    assert (overflow.allowed, overflow.outcome) == (False, "error")


def test_a_rule_that_is_not_a_boolean_denies() -> None:
    policy = _policy({"n": {"tools": ["*"], "require": "args.n"}})
    decision = policy.decide(ALICE, "tool", "t", facts=_facts({"n": 1}))
    assert (decision.allowed, decision.outcome, decision.reason) == (False, "error", "the rule gave int, not a boolean")


def test_claims_tenant_scopes_and_subject() -> None:
    policy = _policy(
        {
            "finance": {"tools": ["ledger"], "require": 'principal.claims.department == "finance"'},
            "tenant": {
                "tools": ["acme_*"],
                "require": 'principal.tenant == "acme" && "tools.read" in principal.scopes',
            },
            "named": {"tools": ["mine"], "require": 'principal.subject.startsWith("al") && !principal.anonymous'},
        }
    )
    for name in ("ledger", "acme_report", "mine"):
        assert policy.decide(ALICE, "tool", name, facts=_facts()).allowed, name
        assert not policy.decide(TREASURER, "tool", name, facts=_facts()).allowed, name
    no_claims = policy.decide(ANONYMOUS, "tool", "ledger", facts=_facts())
    assert (no_claims.outcome, no_claims.reason) == ("error", "KeyError: 'department'")
    assert policy.decide(ANONYMOUS, "tool", "acme_report", facts=_facts()).outcome == "false"  # tenant null


def test_the_time_of_the_call() -> None:
    policy = _policy(
        {"office_hours": {"tools": ["*"], "require": "now.getDayOfWeek() in [1, 2, 3, 4, 5] && now.getHours() >= 7"}}
    )
    assert policy.decide(ALICE, "tool", "t", facts=_facts(now=NOON)).allowed
    assert policy.decide(ALICE, "tool", "t", facts=_facts(now=MIDNIGHT)) == Decision(False, "office_hours", "false")
    assert policy.allows(ALICE, "tool", "t") in (True, False)  # decided at list time with the current time


def test_the_client() -> None:
    policy = _policy(
        {
            "agents": {"tools": ["*"], "require": 'client.name.startsWith("agent") && client.transport != "stdio"'},
            "office": {"tools": ["internal_*"], "require": 'client.address.startsWith("10.")'},
        }
    )
    assert policy.decide(ALICE, "tool", "t", facts=_facts(name="agent-7")).allowed
    assert not policy.decide(ALICE, "tool", "t", facts=_facts(name="inspector")).allowed
    assert not policy.decide(ALICE, "tool", "t", facts=_facts(name="agent-7", transport="stdio")).allowed
    assert policy.decide(ALICE, "tool", "internal_x", facts=_facts(name="agent", address="10.1.2.3")).allowed
    assert not policy.decide(ALICE, "tool", "internal_x", facts=_facts(name="agent", address="192.0.2.1")).allowed


def test_every_applicable_rule_must_hold_and_the_first_failing_is_named() -> None:
    policy = _policy(
        {
            "small": {"tools": ["pay*"], "require": "args.amount < 100"},
            "weekday": {"tools": ["pay"], "require": "now.getDayOfWeek() != 0"},
        }
    )
    assert policy.decide(ALICE, "tool", "pay", facts=_facts({"amount": 5})).allowed
    assert policy.decide(ALICE, "tool", "pay", facts=_facts({"amount": 500})).rule == "small"
    assert policy.decide(ALICE, "tool", "pay", facts=_facts({"amount": 5}, now=MIDNIGHT)).rule == "weekday"


def test_rules_never_grant_what_roles_deny() -> None:
    policy = _policy(
        {"open": {"tools": ["*"], "require": "true"}},
        default="deny",
        tools={"billing_*": {"roles": ["billing"]}},
    )
    assert policy.decide(ALICE, "tool", "billing_x", facts=_facts()).allowed
    denied = policy.decide(Principal("eve"), "tool", "billing_x", facts=_facts())
    assert denied == Decision(False)  # by roles: no rule is named
    assert not policy.decide(ALICE, "tool", "other", facts=_facts()).allowed  # default deny


def test_resources_and_prompts_have_their_own_globs() -> None:
    policy = _policy(
        {
            "users": {"resources": ["users://*"], "require": "principal.tenant == 'acme'"},
            "prompts": {"prompts": ["draft_*"], "require": "size(args.topic) < 20"},
        }
    )
    assert policy.decide(ALICE, "resource", "users://1", facts=_facts()).allowed
    assert not policy.decide(ANONYMOUS, "resource", "users://1", facts=_facts()).allowed
    assert policy.decide(ANONYMOUS, "tool", "users://1", facts=_facts()).allowed  # same name, other kind
    assert not policy.decide(ALICE, "prompt", "draft_mail", facts=_facts({"topic": "x" * 30})).allowed


# ------------------------------------------------------------------ lists
def test_a_list_decides_only_what_needs_no_call() -> None:
    policy = _policy(
        REFUNDS
        | {
            "finance": {"tools": ["ledger"], "require": 'principal.claims.department == "finance"'},
            "agents": {"tools": ["agent_*"], "require": 'client.name == "agent"'},
        }
    )
    # args and client are unknown in a list: such tools stay listed for everyone
    assert policy.allows(ANONYMOUS, "tool", "refund")
    assert policy.allows(ANONYMOUS, "tool", "agent_x")
    # a rule that reads neither decides the listing (false or failing: hidden)
    assert policy.allows(ALICE, "tool", "ledger")
    assert not policy.allows(TREASURER, "tool", "ledger")
    assert not policy.allows(ANONYMOUS, "tool", "ledger")


# ------------------------------------------------------------------ the principal's context
def test_principals_are_kept_apart_in_the_cached_contexts() -> None:
    policy = _policy({"tenant": {"tools": ["*"], "require": "principal.tenant == 'acme'"}})
    for _ in range(3):
        assert policy.decide(ALICE, "tool", "t").allowed
        assert not policy.decide(Principal("x", tenant="other"), "tool", "t").allowed  # a new object each time
        assert not policy.decide(ANONYMOUS, "tool", "t").allowed


def test_a_calls_arguments_are_not_kept_after_its_decision() -> None:
    policy = _policy({"a": {"tools": ["*"], "require": "args.n > 0"}})
    assert policy.decide(ALICE, "tool", "t", facts=_facts({"n": 1})).allowed
    assert policy.decide(ALICE, "tool", "t", facts=_facts({})).outcome == "error"  # not the last call's n
    variables = policy._variables(ALICE, False)  # pyright: ignore[reportPrivateUsage]
    assert compile_rule("args == null").program.execute(variables) is True


# ------------------------------------------------------------------ client facts
def test_client_facts_from_meta_and_scope() -> None:
    from mcplane.audit.forwarded import TrustedProxies

    meta = {"io.modelcontextprotocol/clientInfo": {"name": "agent-7", "version": "1.2"}}
    scope = {"type": "http", "client": ("10.0.0.2", 5000), "headers": [(b"x-forwarded-for", b"203.0.113.9")]}
    context = Context(meta=meta, scope=scope)
    assert client_value(context, TrustedProxies()) == {
        "name": "agent-7",
        "version": "1.2",
        "transport": "http",
        "address": "10.0.0.2",
    }
    assert client_value(context, TrustedProxies(("10.0.0.0/8",)))["address"] == "203.0.113.9"
    websocket = Context(meta={}, scope={"type": "websocket", "client": ("127.0.0.1", 1), "headers": []})
    assert client_value(websocket, TrustedProxies())["transport"] == "ws"
    assert client_value(Context(meta={}), TrustedProxies()) == {
        "name": "",
        "version": "",
        "transport": "stdio",
        "address": "",
    }
