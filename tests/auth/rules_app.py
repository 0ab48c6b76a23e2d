"""The plane tests/auth/test_auth_rules_e2e.py serves with ``mcplane run`` (JWT auth, CEL rules)."""

from __future__ import annotations

from mcplane import Plane

plane = Plane("rules-e2e")


@plane.tool()
def refund(amount: float) -> str:
    return f"refunded {amount:g}"


@plane.tool()
def ledger() -> str:
    return "the ledger"


@plane.tool()
def acme_report() -> str:
    return "acme's report"


@plane.tool()
def echo(text: str) -> str:
    return text
