"""The ``guards`` section: per tool glob, which findings are masked and which refuse the result.

.. code-block:: yaml

    guards:
      tools:
        "*":       {refuse: [secrets, private_key], mask: [credentials]}
        "crm_*":   {refuse: [secrets, credentials], mask: [personal]}
        "public_*": {}                 # no guard for these

``mask`` and ``refuse`` list kinds (see :mod:`mcplane.guards.detectors`) or groups of them
(``secrets``, ``credentials``, ``personal``, ``all``). A kind listed under both is refused. For
one tool the most specific glob applies alone (an exact name, then the most literal
characters, then the one written first), as in ``authorization``, so a narrower entry can
relax or tighten a wider one.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mcplane.guards.detectors import GROUPS, KINDS

__all__ = ["Action", "GuardRule", "GuardsConfig"]

Action = Literal["mask", "refuse"]
_WILDCARDS = frozenset("*?[")


def _expand(names: list[str]) -> list[str]:
    kinds: list[str] = []
    for name in names:
        for kind in GROUPS.get(name, (name,)):
            if kind not in kinds:
                kinds.append(kind)
    return kinds


class GuardRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    mask: list[str] = Field(default_factory=list)
    """Kinds (or groups) replaced by ``[REDACTED:<kind>]``."""
    refuse: list[str] = Field(default_factory=list)
    """Kinds (or groups) that withhold the whole result (``forbidden``)."""

    @field_validator("mask", "refuse")
    @classmethod
    def _known(cls, names: list[str]) -> list[str]:
        for name in names:
            if name not in KINDS and name not in GROUPS:
                known = ", ".join([*GROUPS, *KINDS])
                raise ValueError(f"unknown kind {name!r} (known: {known})")
        return names

    def actions(self) -> dict[str, Action]:
        """Each kind's action (refuse wins over mask)."""
        actions: dict[str, Action] = dict.fromkeys(_expand(self.mask), "mask")
        actions.update(dict.fromkeys(_expand(self.refuse), "refuse"))
        return actions


class GuardsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tools: dict[str, GuardRule] = Field(default_factory=dict)
    """Tool-name glob → what its results are scanned for."""

    def rule_for(self, tool: str) -> GuardRule | None:
        """The most specific entry for ``tool``, or ``None`` (its results are not scanned)."""
        exact = self.tools.get(tool)
        if exact is not None:
            return exact
        best: tuple[int, GuardRule] | None = None
        for pattern, rule in self.tools.items():
            if _WILDCARDS.isdisjoint(pattern) or not fnmatchcase(tool, pattern):
                continue
            literal = sum(1 for ch in pattern if ch not in _WILDCARDS)
            if best is None or literal > best[0]:
                best = (literal, rule)
        return None if best is None else best[1]
