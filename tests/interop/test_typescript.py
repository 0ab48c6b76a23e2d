"""The official TypeScript SDK client (``@modelcontextprotocol/sdk@1.32.2``) against mcplane.

``ts_client.mjs`` runs every case of a cell on one connection and prints the outcomes; each case
is then one test. The SDK speaks the 2025 era only (``initialize`` and sessions; its newest
version is 2025-11-25, it has no 2026-07-28), so its cells are stdio and Streamable HTTP x
2025-11-25 x {the typed plane, the gateway}. It validates ``structuredContent`` against a
listed tool's ``outputSchema`` (the driver lists tools first, as hosts do), which is what the
error layout must survive; it answers elicitation, reports progress and cancels with an
``AbortSignal``.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO_ROOT
from tests.interop.conftest import INTEROP, NODE22, Servers, node_env, require
from tests.interop.matrix import (
    CALLS_UNLISTED,
    CANCEL,
    ELICITATION,
    ERROR_DATA,
    LEGACY,
    META,
    ONE_SERVER,
    PROGRESS,
    TARGETS,
    Case,
    Cell,
    Outcome,
    cases_for,
    params,
)

DRIVER = Path(__file__).with_name("ts_client.mjs")
SDK_MODULES = INTEROP / "ts" / "node_modules"
SDK_VERSION = "1.32.2"
HAS = frozenset({PROGRESS, CANCEL, ELICITATION, META, ONE_SERVER, CALLS_UNLISTED, ERROR_DATA})
RUN_TIMEOUT = 120.0


CELLS = [Cell("ts", transport, LEGACY, target) for transport in ("stdio", "http") for target in TARGETS]


_reports: dict[str, dict[str, Any]] = {}


def _run(cell: Cell, servers: Servers) -> dict[str, Any]:
    require(NODE22, "Node 22")
    require(SDK_MODULES / "@modelcontextprotocol" / "sdk" / "package.json", f"@modelcontextprotocol/sdk@{SDK_VERSION}")
    if cell.transport == "http":
        target: dict[str, Any] = {"url": servers.url(cell.target)}
    else:
        stdio = servers.stdio(cell.target)
        env = {**node_env(), **stdio.env}
        target = {"command": stdio.command, "args": stdio.args, "env": env, "cwd": str(REPO_ROOT)}
    plan = {
        "target": target,
        "cases": {case.id: case.steps(cell.target, f"{cell}-{case.id}") for case in cases_for(cell.target, HAS)},
    }
    completed = subprocess.run(
        [str(NODE22), str(DRIVER), str(SDK_MODULES)],
        input=json.dumps(plan),
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=node_env(),
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert completed.returncode == 0, f"the driver failed:\n{completed.stderr[-3000:]}"
    report: dict[str, Any] = json.loads(completed.stdout)
    assert "fatal" not in report, f"the client could not run the cell: {report['fatal']}\n{completed.stderr[-3000:]}"
    assert report["client"]["sdk"] == SDK_VERSION
    assert report["client"]["protocolVersion"] == cell.era, report["client"]
    return report


@pytest.fixture(scope="module")
def report_of(servers: Servers) -> Any:
    def get(cell: Cell) -> dict[str, Any]:
        if str(cell) not in _reports:
            _reports[str(cell)] = _run(cell, servers)
        return _reports[str(cell)]

    return get


@pytest.mark.parametrize(("cell", "case"), params(CELLS, lambda cell: HAS))
def test_case(cell: Cell, case: Case, report_of: Any) -> None:
    outcomes: list[Outcome] = report_of(cell)["outcomes"][case.id]
    case.check(cell, outcomes)
