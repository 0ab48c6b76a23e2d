"""Who may call what: per-tool, per-resource and per-prompt rules by role or scope.

.. code-block:: yaml

    authorization:
      default: deny                  # or allow (the default): what applies when no rule matches
      tools:
        billing_*: {roles: [billing, admin]}     # any one of these roles
        admin_*:   {scopes: [admin]}             # every one of these scopes
        echo: {}                                 # anyone, even anonymous
      resources:
        "users://*": {roles: [support]}
      prompts:
        "*": {scopes: [prompts.read]}

Patterns are shell-style globs (``*``, ``?``, ``[seq]``; case-sensitive; ``*`` crosses ``/``).
When several match, the most specific wins: an exact name, then the pattern with the most
literal characters, then the one written first. A rule allows a principal that holds at least
one of its ``roles`` (when any are listed) **and** all of its ``scopes`` (when any are listed).

Precedence for one call: a matching config rule; else the roles/scopes given in code
(``call.policy["roles"]``/``["scopes"]``); else ``default``. The file overrides the code so
operators can change access without a redeploy.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from fnmatch import fnmatchcase
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mcplane.context import Principal

__all__ = ["AccessPolicy", "AccessRule", "Kind", "visible"]

Kind = Literal["tool", "resource", "prompt"]
_WILDCARDS = frozenset("*?[")


class AccessRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    roles: list[str] = Field(default_factory=list)
    """Any one of these roles grants access (no roles listed: no role needed)."""
    scopes: list[str] = Field(default_factory=list)
    """All of these scopes are needed (no scopes listed: no scope needed)."""

    def allows(self, principal: Principal) -> bool:
        if self.roles and principal.roles.isdisjoint(self.roles):
            return False
        return all(scope in principal.scopes for scope in self.scopes)


class AccessPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    default: Literal["allow", "deny"] = "allow"
    tools: dict[str, AccessRule] = Field(default_factory=dict)
    resources: dict[str, AccessRule] = Field(default_factory=dict)
    prompts: dict[str, AccessRule] = Field(default_factory=dict)

    def rules(self, kind: Kind) -> dict[str, AccessRule]:
        return {"tool": self.tools, "resource": self.resources, "prompt": self.prompts}[kind]

    def rule_for(self, kind: Kind, name: str) -> AccessRule | None:
        """The most specific configured rule for ``name``, or ``None``."""
        rules = self.rules(kind)
        exact = rules.get(name)
        if exact is not None:
            return exact
        best: tuple[int, AccessRule] | None = None
        for pattern, rule in rules.items():
            if _WILDCARDS.isdisjoint(pattern) or not fnmatchcase(name, pattern):
                continue
            literal = sum(1 for ch in pattern if ch not in _WILDCARDS)
            if best is None or literal > best[0]:
                best = (literal, rule)
        return None if best is None else best[1]

    def effective_rule(self, kind: Kind, name: str, code_policy: Mapping[str, Any] | None = None) -> AccessRule | None:
        """Config rule, else the roles/scopes declared in code, else ``None`` (the default applies)."""
        rule = self.rule_for(kind, name)
        if rule is not None:
            return rule
        if code_policy:
            roles = _names(code_policy.get("roles"))
            scopes = _names(code_policy.get("scopes"))
            if roles or scopes:
                return AccessRule(roles=roles, scopes=scopes)
        return None

    def allows(self, principal: Principal, kind: Kind, name: str, code_policy: Mapping[str, Any] | None = None) -> bool:
        rule = self.effective_rule(kind, name, code_policy)
        if rule is None:
            return self.default == "allow"
        return rule.allows(principal)


def visible(
    principal: Principal,
    kind: Kind,
    name: str,
    policy: AccessPolicy | None,
    code_policy: Mapping[str, Any] | None = None,
) -> bool:
    """Whether ``principal`` may see ``name`` in ``tools/list``, ``resources/list`` (and templates)
    or ``prompts/list``: exactly when it may call it. No policy: everything is visible."""
    if policy is None:
        return AccessPolicy().allows(principal, kind, name, code_policy)
    return policy.allows(principal, kind, name, code_policy)


def _names(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, Collection):
        return [str(item) for item in value]  # pyright: ignore[reportUnknownVariableType]
    raise TypeError(f"expected a role or scope name or a list of them, got {type(value).__name__}")
