"""Access rules: globs, specificity, default allow/deny, code-declared roles, visible()."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mcplane.auth import AccessPolicy, AccessRule, visible
from mcplane.context import ANONYMOUS, Principal
from mcplane.tool_policy import ToolPolicy

BILLING = Principal("bea", roles=frozenset({"billing"}))
ADMIN = Principal("ada", roles=frozenset({"ops"}), scopes=frozenset({"admin", "audit"}))
SUPPORT = Principal("sam", roles=frozenset({"support"}), scopes=frozenset({"prompts.read"}))

POLICY = AccessPolicy.model_validate(
    {
        "tools": {
            "billing_*": {"roles": ["billing", "finance"]},
            "billing_refund": {"roles": ["finance"]},
            "admin_*": {"scopes": ["admin"]},
            "admin_audit_*": {"scopes": ["admin", "audit"]},
            "echo": {},
        },
        "resources": {"users://*": {"roles": ["support"]}, "users://public/*": {}},
        "prompts": {"*": {"scopes": ["prompts.read"]}},
        "default": "allow",
    }
)


@pytest.mark.parametrize(
    ("principal", "kind", "name", "allowed"),
    [
        (BILLING, "tool", "billing_charge", True),
        (ADMIN, "tool", "billing_charge", False),
        (BILLING, "tool", "billing_refund", False),  # the exact rule beats the glob
        (ADMIN, "tool", "admin_reset", True),
        (BILLING, "tool", "admin_reset", False),
        (ADMIN, "tool", "admin_audit_log", True),
        (Principal("x", scopes=frozenset({"admin"})), "tool", "admin_audit_log", False),  # needs both scopes
        (ANONYMOUS, "tool", "echo", True),
        (ANONYMOUS, "tool", "unlisted", True),  # default allow
        (ANONYMOUS, "tool", "Billing_charge", True),  # case-sensitive: the glob does not match
        (SUPPORT, "resource", "users://42", True),
        (BILLING, "resource", "users://42/invoices", False),
        (BILLING, "resource", "users://public/about", True),  # the longer literal wins
        (BILLING, "resource", "files://x", True),
        (SUPPORT, "prompt", "summarise", True),
        (BILLING, "prompt", "summarise", False),
    ],
)
def test_rules(principal: Principal, kind: str, name: str, allowed: bool) -> None:
    assert POLICY.allows(principal, kind, name) is allowed  # type: ignore[arg-type]
    assert visible(principal, kind, name, POLICY) is allowed  # type: ignore[arg-type]


def test_default_deny_refuses_what_no_rule_covers() -> None:
    policy = AccessPolicy(default="deny", tools={"public_*": AccessRule()})
    assert policy.allows(ANONYMOUS, "tool", "public_time")
    assert not policy.allows(ADMIN, "tool", "delete_everything")
    assert not visible(ADMIN, "resource", "db://x", policy)


def test_code_declared_roles_apply_when_no_config_rule_matches() -> None:
    declared = ToolPolicy.from_mapping({"roles": ["billing"], "timeout": 5.0})
    assert AccessPolicy().allows(BILLING, "tool", "charge", declared)
    assert not AccessPolicy().allows(ADMIN, "tool", "charge", declared)
    assert AccessPolicy().allows(ADMIN, "tool", "charge", ToolPolicy.from_mapping({"scopes": "admin"}))
    assert not visible(SUPPORT, "tool", "charge", None, ToolPolicy(scopes=("admin",)))
    # Default deny does not override a grant declared in code ...
    assert AccessPolicy(default="deny").allows(BILLING, "tool", "charge", declared)
    # ... but the file overrides the code.
    opened = AccessPolicy(tools={"charge": AccessRule()})
    assert opened.allows(ADMIN, "tool", "charge", declared)
    closed = AccessPolicy(tools={"char*": AccessRule(roles=["finance"])})
    assert not closed.allows(BILLING, "tool", "charge", declared)


def test_ties_go_to_the_rule_written_first() -> None:
    policy = AccessPolicy(tools={"a*": AccessRule(roles=["first"]), "*b": AccessRule(roles=["second"])})
    assert policy.rule_for("tool", "ab") == AccessRule(roles=["first"])
    assert policy.rule_for("tool", "zz") is None


def test_no_policy_shows_everything() -> None:
    assert visible(ANONYMOUS, "tool", "anything", None)


def test_policy_config_is_strict() -> None:
    with pytest.raises(ValidationError):
        AccessPolicy.model_validate({"default": "maybe"})
    with pytest.raises(ValidationError):
        AccessPolicy.model_validate({"tools": {"x": {"role": ["typo"]}}})
    with pytest.raises(TypeError):
        AccessPolicy().allows(ADMIN, "tool", "x", ToolPolicy.from_mapping({"roles": 3}))
