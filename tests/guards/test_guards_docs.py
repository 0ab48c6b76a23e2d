"""docs/guards.md says what the code does: its example loads, its kinds table is the kinds, and the
refusal it shows is the one a caller gets."""

from __future__ import annotations

import json
import re
from pathlib import Path

from mcplane.config import load_config
from mcplane.guards import GROUPS, KINDS
from tests.conftest import REPO_ROOT

GUIDE = (REPO_ROOT / "docs" / "guards.md").read_text(encoding="utf-8")


def test_the_example_loads(tmp_path: Path) -> None:
    (snippet,) = re.findall(r"```yaml\n(.*?)```", GUIDE, flags=re.S)
    path = tmp_path / "mcplane.yaml"
    path.write_text(snippet, encoding="utf-8")
    guards = load_config(path, environ={}).guards
    assert guards is not None
    crm = guards.rule_for("crm_export")
    assert crm is not None
    assert crm.actions()["email"] == "mask"
    assert crm.actions()["jwt"] == "refuse"
    public = guards.rule_for("public_search")
    assert public is not None
    assert public.actions() == {}


def test_the_kinds_table_is_the_kinds_and_their_groups() -> None:
    table = GUIDE.split("## Kinds", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| `(\w+)` \|", table, flags=re.M)
    assert [kind for kind, _ in rows] == list(KINDS)
    for kind, group in rows:
        assert kind in GROUPS[group]


def test_the_refusal_shown_is_the_one_sent() -> None:
    from mcplane.middleware import guard

    (shown,) = re.findall(r"```json\n(.*?)```", GUIDE, flags=re.S)
    body = json.loads(shown)
    assert (body["code"], body["retryable"]) == ("forbidden", False)
    assert f'Forbidden("{body["message"]}")' in Path(guard.__file__).read_text(encoding="utf-8")
