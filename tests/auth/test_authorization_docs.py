"""docs/authorization.md says what the code does: its example loads and decides as described,
its config check line is the real one, and its table of names is what a rule can read."""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from mcplane.auth.policy import CallFacts
from mcplane.auth.rules import NAMES
from mcplane.config import load_config
from mcplane.context import Principal
from tests.conftest import REPO_ROOT, mcplane_command

GUIDE = (REPO_ROOT / "docs" / "authorization.md").read_text(encoding="utf-8")


def _facts(arguments: dict[str, object], now: datetime) -> CallFacts:
    return CallFacts(arguments, lambda: {"name": "", "version": "", "transport": "http", "address": ""}, now)


def test_the_example_loads_and_decides_as_described(tmp_path: Path) -> None:
    (snippet,) = re.findall(r"```yaml\n(.*?)```", GUIDE, flags=re.S)
    path = tmp_path / "mcplane.yaml"
    path.write_text(snippet, encoding="utf-8")
    policy = load_config(path, environ={}).authorization
    assert policy is not None
    monday_noon = datetime(2026, 12, 7, 12, tzinfo=UTC)
    billing = Principal("b", roles=frozenset({"billing"}), tenant="acme", claims={"department": "finance"})
    treasury = Principal("t", roles=frozenset({"treasury"}))
    assert policy.decide(billing, "tool", "billing_refund", facts=_facts({"amount": 10}, monday_noon)).allowed
    denied = policy.decide(billing, "tool", "billing_refund", facts=_facts({"amount": 5000}, monday_noon))
    assert denied.rule == "refunds_under_limit"
    assert policy.decide(treasury, "tool", "billing_refund", facts=_facts({"amount": 5000}, monday_noon)).allowed
    assert policy.decide(billing, "resource", "ledger://2026", facts=_facts({}, monday_noon)).allowed
    assert policy.decide(treasury, "tool", "ledger_read", facts=_facts({}, monday_noon)).rule == "finance_ledger"
    sunday = datetime(2026, 12, 6, 12, tzinfo=UTC)
    assert policy.decide(billing, "tool", "admin_reset", facts=_facts({}, sunday)).rule == "office_hours"


def test_the_config_check_line_is_the_real_one(tmp_path: Path) -> None:
    (shown,) = re.findall(r"^mcplane: error: .*$", GUIDE, flags=re.M)
    (tmp_path / "mcplane.yaml").write_text(
        "authorization:\n  rules:\n    big_refunds:\n      tools: [refund]\n"
        "      require: 'args.amount <= || \"treasury\" in principal.roles'\n",
        encoding="utf-8",
    )
    done = subprocess.run(
        mcplane_command("config", "check", "mcplane.yaml"), cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.stderr.strip() == shown


def test_the_table_lists_what_a_rule_reads() -> None:
    table = GUIDE.split("## What a rule reads", 1)[1].split("\n## ", 1)[0]
    documented = {name.split(".")[0] for name in re.findall(r"^\| `([a-z.]+)`", table, flags=re.M)}
    assert documented == set(NAMES)
