"""Output guards: find secrets, credentials and personal data in tool results; mask or refuse.

::

    GuardsConfig (the ``guards`` section) ──▶ GuardMiddleware (pipeline slot ``guard``)
        rule_for(tool) → GuardRule(mask, refuse)      detectors_for(kinds) → Scanner
        scan_result(scanner, result) → Findings        mask_result(result, findings) → a masked copy

See :mod:`mcplane.guards.detectors` for the kinds and :mod:`mcplane.middleware.guard` for where
the slot sits and what a refusal answers.
"""

from mcplane.guards.config import Action, GuardRule, GuardsConfig
from mcplane.guards.detectors import GROUPS, KINDS, Hit, detectors_for
from mcplane.guards.scan import Findings, Scanner, mask_result, scan_result

__all__ = [
    "GROUPS",
    "KINDS",
    "Action",
    "Findings",
    "GuardRule",
    "GuardsConfig",
    "Hit",
    "Scanner",
    "detectors_for",
    "mask_result",
    "scan_result",
]
