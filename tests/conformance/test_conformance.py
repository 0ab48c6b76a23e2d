"""The official MCP conformance suite against ``examples/conformance/server.py``, over real HTTP.

One ``mcplane run`` subprocess serves the conformance Plane; four legs of the pinned harnesses
(``scripts/install-test-deps.sh`` puts them under ``.tools/``) run against it:

- ``@modelcontextprotocol/conformance@0.2.0-alpha.12 --suite all`` (tasks extension included),
  then again with ``--spec-version 2025-11-25`` and ``--spec-version 2026-07-28``;
- ``@modelcontextprotocol/conformance@0.1.16 --suite all``.

Every ``checks.json`` is read; a failed check fails the test unless
``expected-failures.yml`` lists it with a reason.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO_ROOT, start_server

pytestmark = pytest.mark.conformance

SERVER = REPO_ROOT / "examples" / "conformance" / "server.py"
TOOLS = REPO_ROOT / ".tools"
NODE_BIN = TOOLS / "alpha" / "node_modules" / "node" / "bin"
EXPECTED_FAILURES = Path(__file__).with_name("expected-failures.yml")
LEG_TIMEOUT = 90.0
"""Seconds one leg may take (a whole run takes well under a minute)."""


@dataclass(frozen=True)
class Leg:
    name: str
    harness: str
    args: tuple[str, ...]

    @property
    def binary(self) -> Path:
        return TOOLS / self.harness / "node_modules" / ".bin" / "conformance"


LEGS = (
    Leg("all", "alpha", ("--suite", "all")),
    Leg("spec-2025-11-25", "alpha", ("--suite", "all", "--spec-version", "2025-11-25")),
    Leg("spec-2026-07-28", "alpha", ("--suite", "all", "--spec-version", "2026-07-28")),
    Leg("stable", "stable", ("--suite", "all")),
)


@dataclass(frozen=True)
class Allowed:
    scenario: str
    check: str | None
    legs: frozenset[str] | None
    reason: str

    def covers(self, leg: str, scenario: str, check: str) -> bool:
        return (
            self.scenario == scenario
            and (self.check is None or self.check == check)
            and (self.legs is None or leg in self.legs)
        )


@dataclass
class LegResult:
    passed: int = 0
    failed: list[tuple[str, str, str]] = field(default_factory=lambda: [])
    """(scenario, check id, message) of every FAILURE."""
    scenarios: int = 0


def load_expected_failures() -> list[Allowed]:
    data = yaml.safe_load(EXPECTED_FAILURES.read_text(encoding="utf-8")) or {}
    entries: list[Allowed] = []
    for raw in data.get("server") or []:
        reason = str(raw.get("reason") or "").strip()
        assert reason, f"expected-failures.yml entry without a reason: {raw!r}"
        legs = raw.get("legs")
        unknown = set(legs or ()) - {leg.name for leg in LEGS}
        assert not unknown, f"expected-failures.yml entry names unknown legs {sorted(unknown)}: {raw!r}"
        entries.append(Allowed(raw["scenario"], raw.get("check"), frozenset(legs) if legs else None, reason))
    return entries


def scenario_name(result_dir: Path) -> str:
    """``server-<scenario>-<timestamp>`` → ``<scenario>``."""
    return re.sub(r"^server-|-\d{4}-\d{2}-\d{2}T[\d-]+Z$", "", result_dir.name)


def read_results(out_dir: Path) -> LegResult:
    result = LegResult()
    for checks_file in sorted(out_dir.glob("*/checks.json")):
        result.scenarios += 1
        scenario = scenario_name(checks_file.parent)
        checks: list[dict[str, Any]] = json.loads(checks_file.read_text(encoding="utf-8"))
        for check in checks:
            if check["status"] == "SUCCESS":
                result.passed += 1
            elif check["status"] == "FAILURE":
                result.failed.append((scenario, check["id"], str(check.get("errorMessage") or "")[:400]))
    return result


def run_leg(leg: Leg, url: str, out_dir: Path) -> tuple[LegResult, str]:
    env = {**os.environ, "PATH": f"{NODE_BIN}{os.pathsep}{os.environ.get('PATH', '')}", "NO_COLOR": "1"}
    completed = subprocess.run(
        [str(leg.binary), "server", "--url", url, *leg.args, "-o", str(out_dir)],
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=LEG_TIMEOUT,
        check=False,
    )
    return read_results(out_dir), completed.stdout + completed.stderr


def harness_total(output: str) -> tuple[int, int] | None:
    """The harness's own ``Total: N passed, M failed`` line, to cross-check checks.json."""
    match = re.search(r"Total: (\d+) passed, (\d+) failed", output)
    return (int(match.group(1)), int(match.group(2))) if match else None


def missing_tools() -> str | None:
    if not NODE_BIN.joinpath("node").exists():
        return f"Node 22 not found at {NODE_BIN.relative_to(REPO_ROOT)}"
    for leg in LEGS:
        if not leg.binary.exists():
            return f"conformance harness not found at {leg.binary.relative_to(REPO_ROOT)}"
    return None


@pytest.mark.timeout(4 * LEG_TIMEOUT + 60)
def test_official_conformance_suite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if (reason := missing_tools()) is not None:
        pytest.skip(f"{reason}: run scripts/install-test-deps.sh to install the pinned harnesses")
    allowed = load_expected_failures()
    server = start_server(SERVER, tmp_path=tmp_path)
    summaries: list[str] = []
    unexpected: list[str] = []
    used: set[Allowed] = set()
    try:
        for leg in LEGS:
            result, output = run_leg(leg, server.url, tmp_path / leg.name)
            assert result.scenarios > 0, f"leg {leg.name}: the harness wrote no results\n{output[-3000:]}"
            total = harness_total(output)
            assert total == (result.passed, len(result.failed)), (
                f"leg {leg.name}: checks.json counts {result.passed} passed / {len(result.failed)} failed "
                f"but the harness reported {total} (a scenario crashed?)\n{output[-3000:]}"
            )
            tolerated = 0
            for scenario, check, message in result.failed:
                entry = next((a for a in allowed if a.covers(leg.name, scenario, check)), None)
                if entry is None:
                    unexpected.append(f"[{leg.name}] {scenario} / {check}: {message}")
                else:
                    used.add(entry)
                    tolerated += 1
            summaries.append(
                f"{leg.name:<16} {result.scenarios:>3} scenarios  {result.passed:>4} passed  "
                f"{len(result.failed):>3} failed ({tolerated} expected)"
            )
    finally:
        server.stop()
    stale = [f"{a.scenario} / {a.check or '*'}" for a in allowed if a not in used]
    with capsys.disabled():  # the per-leg summary is shown even when output is captured
        print("\nconformance per leg:\n  " + "\n  ".join(summaries))
        if stale:
            print("expected failures that now pass (remove them from expected-failures.yml):\n  " + "\n  ".join(stale))
    assert not unexpected, "unexpected conformance failures:\n" + "\n".join(unexpected)
