"""The official MCP conformance suite in client mode against :class:`mcplane.client.Client`.

``conformance client --command "python tests/conformance/client_under_test.py" --scenario NAME``
for every client scenario of the pinned harnesses that mcplane's client can take part in, each at
the protocol version the harness picks for it (the lifecycle follows: ``initialize`` for
2025-11-25, stateless for 2026-07-28) and, for scenarios of both eras, again at 2026-07-28.
Every ``checks.json`` is read; a failed check fails the test (warnings are reported, not failed).

The scenarios not run are named in :data:`NOT_RUN` with the reason, and the test fails when a
harness lists a client scenario that is neither run nor named there.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conformance.test_conformance import NODE_BIN, TOOLS
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.conformance

CLIENT = Path(__file__).with_name("client_under_test.py")
SCENARIO_TIMEOUT = 60.0
MODERN = "2026-07-28"

NOT_RUN: dict[str, str] = {
    "auth/": (
        "authorization flows (OAuth 2.1 discovery, PKCE, client registration, token endpoints, scope step-up, "
        "iss checks, client credentials, enterprise-managed authorization, DPoP, workload identity): "
        "mcplane.Client sends a static bearer token (headers=) and has no OAuth client"
    ),
    "sep-2640-": "the io.modelcontextprotocol/skills extension (SEP-2640): mcplane.Client does not implement it",
}
"""Client scenarios (by name prefix) mcplane.Client does not take part in, with the reason."""


@dataclass(frozen=True)
class Run:
    harness: str
    scenario: str
    spec_version: str | None = None

    @property
    def name(self) -> str:
        version = f"@{self.spec_version}" if self.spec_version else ""
        return f"{self.harness}:{self.scenario}{version}"


_ALPHA = (
    "initialize",
    "tools_call",
    "elicitation-sep1034-client-defaults",
    "sse-retry",
    "request-metadata",
    "sep-2322-client-request-state",
    "http-standard-headers",
    "http-custom-headers",
    "http-invalid-tool-headers",
    "json-schema-ref-no-deref",
    "json-schema-2020-12-preservation",
)
_BOTH_ERAS = ("tools_call", "json-schema-2020-12-preservation")
_STABLE = ("initialize", "tools_call", "elicitation-sep1034-client-defaults", "sse-retry")
RUNS = (
    *(Run("alpha", scenario) for scenario in _ALPHA),
    *(Run("alpha", scenario, MODERN) for scenario in _BOTH_ERAS),
    *(Run("stable", scenario) for scenario in _STABLE),
)


def _binary(harness: str) -> Path:
    return TOOLS / harness / "node_modules" / ".bin" / "conformance"


def _env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{NODE_BIN}{os.pathsep}{os.environ.get('PATH', '')}", "NO_COLOR": "1"}


def listed_client_scenarios(harness: str) -> list[str]:
    """The client scenarios ``conformance list`` names."""
    listing = [str(_binary(harness)), "list"]
    output = subprocess.run(listing, cwd=REPO_ROOT, env=_env(), capture_output=True, text=True, timeout=60, check=True)
    section = output.stdout.split("Client scenarios", 1)[1].split("\n\n", 1)[0]
    return re.findall(r"^\s*- (\S+)", section, flags=re.MULTILINE)


def run_scenario(run: Run, out_dir: Path) -> tuple[list[dict[str, Any]], str]:
    command = f"{sys.executable} {CLIENT}"
    args = [str(_binary(run.harness)), "client", "--command", command, "--scenario", run.scenario, "-o", str(out_dir)]
    if run.spec_version is not None:
        args += ["--spec-version", run.spec_version]
    completed = subprocess.run(
        args,
        cwd=REPO_ROOT,
        env=_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=SCENARIO_TIMEOUT,
        check=False,
    )
    checks: list[dict[str, Any]] = []
    for checks_file in sorted(out_dir.glob("**/checks.json")):
        checks.extend(json.loads(checks_file.read_text(encoding="utf-8")))
    return checks, completed.stdout + completed.stderr


@pytest.mark.timeout(300)
def test_mcplane_client_passes_the_client_scenarios(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for harness in ("alpha", "stable"):
        if not NODE_BIN.joinpath("node").exists() or not _binary(harness).exists():
            pytest.skip("the pinned conformance harnesses are not installed: run scripts/install-test-deps.sh")
    for harness in ("alpha", "stable"):
        run_here = {run.scenario for run in RUNS if run.harness == harness}
        unplanned = [
            scenario
            for scenario in listed_client_scenarios(harness)
            if scenario not in run_here and not any(scenario.startswith(prefix) for prefix in NOT_RUN)
        ]
        assert not unplanned, f"{harness}: client scenarios neither run nor in NOT_RUN (with a reason): {unplanned}"

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda run: (run, *run_scenario(run, tmp_path / run.name)), RUNS))
    failures: list[str] = []
    summaries: list[str] = []
    for run, checks, output in results:
        if not checks:
            failures.append(f"{run.name}: the harness wrote no checks\n{output[-2000:]}")
            continue
        statuses = [check["status"] for check in checks]
        for check in checks:
            if check["status"] == "FAILURE":
                failures.append(f"{run.name} / {check['id']}: {str(check.get('errorMessage') or '')[:300]}")
        summaries.append(
            f"{run.name:<52} {statuses.count('SUCCESS'):>3} passed  {statuses.count('FAILURE'):>2} failed  "
            f"{statuses.count('WARNING'):>2} warnings"
        )
    with capsys.disabled():
        print("\nconformance client mode (mcplane.Client):\n  " + "\n  ".join(summaries))
        print("not run:\n  " + "\n  ".join(f"{prefix}*: {reason}" for prefix, reason in NOT_RUN.items()))
    assert not failures, "client conformance failures:\n" + "\n".join(failures)
