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
(``call.policy.roles``/``.scopes``); else ``default``. The file overrides the code so
operators can change access without a redeploy.

**Attribute rules** (``rules:``) add conditions on top, as CEL expressions over the principal,
the call, its arguments, the time and the client (see :mod:`mcplane.auth.rules`)::

    authorization:
      rules:
        refunds_under_limit:                       # its name: logged and audited, never sent
          tools: ["billing_refund*"]               # globs of what it applies to (also resources:, prompts:)
          require: 'args.amount <= 1000 || "treasury" in principal.roles'

A call is allowed when the roles/scopes decision above allows it **and** every rule that
applies to it holds; the first rule (in file order) that is false, or cannot be evaluated
(a missing field, a wrong type: fail closed), denies it. Rules never grant what roles deny.
A list (``tools/list``, ...) hides a name only when a decision it can make denies it: rules that
read ``args`` need a call, so they are left to the call and the name stays listed; rules over
``client`` are decided with the listing client.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from mcplane.auth.rules import CompiledRule, RuleFailed, compile_rule, evaluate, now_value, principal_value
from mcplane.context import Principal
from mcplane.tool_policy import ToolPolicy

__all__ = ["AccessPolicy", "AccessRule", "CallFacts", "Decision", "Kind", "Rule", "visible"]

Kind = Literal["tool", "resource", "prompt"]
_WILDCARDS = frozenset("*?[")
_RULE_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_MATCH_CACHE = 4096
"""Names whose applicable rules are remembered (names come from clients: the cache is bounded)."""
_CONTEXT_CACHE = 1024


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


class Rule(BaseModel):
    """One attribute rule: the calls it applies to (globs by kind) and what must hold for them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tools: list[str] = Field(default_factory=list)
    """Tool-name globs."""
    resources: list[str] = Field(default_factory=list)
    """Resource-URI (or template) globs."""
    prompts: list[str] = Field(default_factory=list)
    """Prompt-name globs."""
    require: str
    """A CEL expression that must be true for the call to go on."""
    _compiled: CompiledRule | None = PrivateAttr(default=None)

    @field_validator("require")
    @classmethod
    def _compiles(cls, source: str) -> str:
        _compile(source)  # raises RuleError (a ValueError) naming the line and column
        return source

    @model_validator(mode="after")
    def _applies_somewhere(self) -> Rule:
        if not (self.tools or self.resources or self.prompts):
            raise ValueError('a rule names what it applies to: tools, resources or prompts (globs; "*" for all)')
        self._compiled = _compile(self.require)
        return self

    @property
    def compiled(self) -> CompiledRule:
        compiled = self._compiled
        assert compiled is not None  # set when the model was validated
        return compiled

    def globs(self, kind: Kind) -> list[str]:
        return {"tool": self.tools, "resource": self.resources, "prompt": self.prompts}[kind]


_compiled_sources: dict[str, CompiledRule] = {}


def _compile(source: str) -> CompiledRule:
    """Compile once per source text (a rule is validated field by field, then as a whole)."""
    compiled = _compiled_sources.get(source)
    if compiled is None:
        compiled = compile_rule(source)
        if len(_compiled_sources) < 4096:
            _compiled_sources[source] = compiled
    return compiled


class AccessPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    default: Literal["allow", "deny"] = "allow"
    tools: dict[str, AccessRule] = Field(default_factory=dict)
    resources: dict[str, AccessRule] = Field(default_factory=dict)
    prompts: dict[str, AccessRule] = Field(default_factory=dict)
    rules: dict[str, Rule] = Field(default_factory=dict)
    """Named CEL conditions; every one that applies to a call must hold."""
    _matched: dict[tuple[str, str], tuple[tuple[str, CompiledRule], ...]] = PrivateAttr(default_factory=dict)
    _contexts: dict[tuple[int, bool], tuple[Principal, Any]] = PrivateAttr(default_factory=dict)

    @field_validator("rules")
    @classmethod
    def _rule_names(cls, rules: dict[str, Rule]) -> dict[str, Rule]:
        for name in rules:
            if not _RULE_NAME.match(name):
                raise ValueError(f"rule name {name!r}: use 1 to 64 letters, digits, '_', '.', ':' or '-'")
        return rules

    def role_rules(self, kind: Kind) -> dict[str, AccessRule]:
        return {"tool": self.tools, "resource": self.resources, "prompt": self.prompts}[kind]

    def rule_for(self, kind: Kind, name: str) -> AccessRule | None:
        """The most specific configured rule for ``name``, or ``None``."""
        rules = self.role_rules(kind)
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

    def effective_rule(self, kind: Kind, name: str, code_policy: ToolPolicy | None = None) -> AccessRule | None:
        """Config rule, else the roles/scopes declared in code, else ``None`` (the default applies)."""
        rule = self.rule_for(kind, name)
        if rule is not None:
            return rule
        if code_policy is not None and (code_policy.roles or code_policy.scopes):
            return AccessRule(roles=list(code_policy.roles or ()), scopes=list(code_policy.scopes or ()))
        return None

    def allows(
        self,
        principal: Principal,
        kind: Kind,
        name: str,
        code_policy: ToolPolicy | None = None,
        client: Callable[[], dict[str, str]] | None = None,
    ) -> bool:
        """Whether a list shows ``name``: the decision without a call (see :meth:`decide`)."""
        return self.decide(principal, kind, name, code_policy, client=client).allowed

    def role_allows(self, principal: Principal, kind: Kind, name: str, code_policy: ToolPolicy | None = None) -> bool:
        """The roles/scopes decision alone (a rule, the code's roles/scopes, else ``default``)."""
        rule = self.effective_rule(kind, name, code_policy)
        if rule is None:
            return self.default == "allow"
        return rule.allows(principal)

    def rules_for(self, kind: Kind, name: str) -> tuple[tuple[str, CompiledRule], ...]:
        """The attribute rules that apply to ``name``, in file order."""
        key = (kind, name)
        found = self._matched.get(key)
        if found is None:
            found = tuple(
                (rule_name, rule.compiled)
                for rule_name, rule in self.rules.items()
                if any(fnmatchcase(name, glob) for glob in rule.globs(kind))
            )
            if len(self._matched) >= _MATCH_CACHE:
                self._matched.clear()
            self._matched[key] = found
        return found

    def decide(
        self,
        principal: Principal,
        kind: Kind,
        name: str,
        code_policy: ToolPolicy | None = None,
        facts: CallFacts | None = None,
        client: Callable[[], dict[str, str]] | None = None,
    ) -> Decision:
        """Roles/scopes first, then every applicable rule. ``facts`` is what a call adds
        (arguments, client). Without it (a list), rules that read arguments are not evaluated,
        and rules that read the client only when ``client`` (the listing client) is given."""
        if not self.role_allows(principal, kind, name, code_policy):
            return _DENIED_BY_ROLES
        applicable = self.rules_for(kind, name)
        if facts is None:
            applicable = tuple(
                item
                for item in applicable
                if "args" not in item[1].names and (client is not None or "client" not in item[1].names)
            )
        if not applicable:
            return _ALLOWED
        names: set[str] = set()
        claims = False
        for _, compiled in applicable:
            names |= compiled.names
            claims = claims or compiled.reads_claims
        variables = self._variables(principal, claims)
        if "call" in names:
            variables.add_variable("call", {"kind": kind, "name": name})
        if "now" in names:
            variables.add_variable("now", facts.now if facts is not None else now_value())
        if facts is not None:
            if "args" in names:
                variables.add_variable("args", dict(facts.arguments))
            if "client" in names:
                variables.add_variable("client", facts.client())
        elif client is not None and "client" in names:
            variables.add_variable("client", client())
        try:
            for rule_name, compiled in applicable:
                try:
                    holds = evaluate(compiled, variables)
                except RuleFailed as exc:
                    return Decision(False, rule_name, "error", str(exc))
                if not holds:
                    return Decision(False, rule_name, "false")
        finally:
            if "args" in names and facts is not None:
                variables.add_variable("args", None)  # a cached context must not keep a call's arguments
        return _ALLOWED

    def _variables(self, principal: Principal, claims: bool) -> Any:
        """A CEL context holding ``principal``, kept per principal object: authentication hands
        out the same object for the same credential, and converting it is most of a rule's cost."""
        import cel

        key = (id(principal), claims)
        cached = self._contexts.get(key)
        if cached is not None and cached[0] is principal:
            return cached[1]
        variables = cel.Context()
        variables.add_variable("principal", principal_value(principal, claims=claims))
        if len(self._contexts) >= _CONTEXT_CACHE:
            self._contexts.clear()
        self._contexts[key] = (principal, variables)
        return variables


@dataclass(frozen=True, slots=True)
class CallFacts:
    """What a call adds to a decision: its arguments, the time, and (lazily) its client."""

    arguments: Mapping[str, Any]
    client: Callable[[], dict[str, str]]
    now: Any = None

    @staticmethod
    def of(arguments: Mapping[str, Any], client: Callable[[], dict[str, str]]) -> CallFacts:
        return CallFacts(arguments, client, now_value())


@dataclass(frozen=True, slots=True)
class Decision:
    """An authorization decision; a denial by a rule names it (for the log and audit, never the client)."""

    allowed: bool
    rule: str | None = None
    outcome: Literal["", "false", "error"] = ""
    """Why ``rule`` denied: it was ``false``, or it could not be evaluated (``error``)."""
    reason: str = ""
    """What went wrong when ``outcome`` is ``error``."""


_ALLOWED = Decision(True)
_DENIED_BY_ROLES = Decision(False)


def visible(
    principal: Principal,
    kind: Kind,
    name: str,
    policy: AccessPolicy | None,
    code_policy: ToolPolicy | None = None,
    client: Callable[[], dict[str, str]] | None = None,
) -> bool:
    """Whether ``principal`` may see ``name`` in ``tools/list``, ``resources/list`` (and templates)
    or ``prompts/list``: exactly when a decision that ignores arguments allows it (``client`` is
    the listing client, for rules that read it). No policy: everything is visible."""
    if policy is None:
        return AccessPolicy().allows(principal, kind, name, code_policy)
    return policy.allows(principal, kind, name, code_policy, client)
