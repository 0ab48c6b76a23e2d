"""The official MCP conformance suite against ``examples/conformance/server.py``, over real HTTP.

Two targets, each fresh for its run:

- ``plane``: one ``mcplane run`` subprocess serving the conformance Plane;
- ``gateway``: that same server behind ``mcplane gateway --config examples/conformance/gateway.yaml
  --transport http`` (a Streamable HTTP upstream exposed without a namespace): over HTTP the
  gateway keeps a 2026-07-28 link and a 2025-11-25 session to the server, its lean lane, its
  relays (questions, log messages, progress, stream polling), passthrough of multi-round-trip
  input and tasks, and its own handlers (completions, log level, subscriptions, ``tasks/*``) are
  all on the path; a stdio upstream would exercise one era and the SDK client only.

Against each, four legs of the pinned harnesses (``scripts/install-test-deps.sh`` puts them under
``.tools/``):

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
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import REPO_ROOT, START_TIMEOUT, ServerProcess, free_port, mcplane_command, start_server

pytestmark = pytest.mark.conformance

SERVER = REPO_ROOT / "examples" / "conformance" / "server.py"
GATEWAY_CONFIG = REPO_ROOT / "examples" / "conformance" / "gateway.yaml"
TARGETS = ("plane", "gateway")
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
    targets: frozenset[str] | None
    reason: str

    def covers(self, target: str, leg: str, scenario: str, check: str) -> bool:
        return (
            self.scenario == scenario
            and (self.check is None or self.check == check)
            and (self.legs is None or leg in self.legs)
            and (self.targets is None or target in self.targets)
        )


MUST_SUCCEED = frozenset(
    {
        ("server-sse-polling", "server-sse-disconnect-resume"),
        ("server-stateless", "sep-2575-server-sends-tools-list-changed-on-subscription"),
        ("server-stateless", "sep-2575-server-sends-prompts-list-changed-on-subscription"),
        ("sep-2164-resource-not-found", "sep-2164-error-code"),
        ("sep-2164-resource-not-found", "sep-2164-data-uri"),
    }
)
"""Checks the alpha harness reports as INFO or WARNING (a SHOULD) when the behaviour is missing,
which mcplane implements on every target: anything but SUCCESS fails the test like a FAILURE.
(The stable harness's ``server-sse-polling`` client sees no mid-call close from the plane either.)"""


@dataclass
class LegResult:
    passed: int = 0
    failed: list[tuple[str, str, str]] = field(default_factory=lambda: [])
    """(scenario, check id, message) of every FAILURE."""
    scenarios: int = 0
    must_succeed: list[tuple[str, str, str]] = field(default_factory=lambda: [])
    """(scenario, check id, status and message) of every check of MUST_SUCCEED that did not succeed."""


def load_expected_failures() -> list[Allowed]:
    data = yaml.safe_load(EXPECTED_FAILURES.read_text(encoding="utf-8")) or {}
    entries: list[Allowed] = []
    for raw in data.get("server") or []:
        reason = str(raw.get("reason") or "").strip()
        assert reason, f"expected-failures.yml entry without a reason: {raw!r}"
        legs = raw.get("legs")
        unknown = set(legs or ()) - {leg.name for leg in LEGS}
        assert not unknown, f"expected-failures.yml entry names unknown legs {sorted(unknown)}: {raw!r}"
        targets = raw.get("targets")
        unknown = set(targets or ()) - set(TARGETS)
        assert not unknown, f"expected-failures.yml entry names unknown targets {sorted(unknown)}: {raw!r}"
        entries.append(
            Allowed(
                raw["scenario"],
                raw.get("check"),
                frozenset(legs) if legs else None,
                frozenset(targets) if targets else None,
                reason,
            )
        )
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
            elif (scenario, check["id"]) in MUST_SUCCEED:
                message = f"{check['status']} (must succeed): {check.get('errorMessage') or check.get('details')}"
                result.must_succeed.append((scenario, check["id"], message[:400]))
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


def start_gateway(upstream: ServerProcess, tmp_path: Path) -> ServerProcess:
    """``mcplane gateway --config examples/conformance/gateway.yaml --transport http`` in front of
    ``upstream``, once ``/ready`` says the upstream is connected."""
    port = free_port()
    stderr_path = tmp_path / f"gateway-{port}.stderr"
    env = {"CONFORMANCE_UPSTREAM_URL": upstream.url}
    with stderr_path.open("wb") as errlog:
        proc = subprocess.Popen(
            mcplane_command("gateway", "--config", str(GATEWAY_CONFIG), "--transport", "http", "--port", str(port)),
            cwd=REPO_ROOT,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=errlog,
        )
    gateway = ServerProcess(proc, port, stderr_path, env)
    deadline = time.monotonic() + START_TIMEOUT
    while not _ready(gateway.base):
        if time.monotonic() > deadline:
            gateway.stop(signal.SIGKILL)
            pytest.fail(f"the gateway was not ready within {START_TIMEOUT:g} s:\n{gateway.stderr()[-3000:]}")
        try:
            proc.wait(timeout=0.05)  # poll: returns early if the gateway exits
        except subprocess.TimeoutExpired:
            continue
        pytest.fail(f"the gateway exited with {proc.returncode}:\n{gateway.stderr()[-3000:]}")
    return gateway


def _ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/ready", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.timeout(4 * LEG_TIMEOUT + 60)
def test_official_conformance_suite(target: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if (reason := missing_tools()) is not None:
        pytest.skip(f"{reason}: run scripts/install-test-deps.sh to install the pinned harnesses")
    allowed = load_expected_failures()
    server = start_server(SERVER, tmp_path=tmp_path)
    gateway: ServerProcess | None = None
    summaries: list[str] = []
    unexpected: list[str] = []
    used: set[Allowed] = set()
    try:
        if target == "gateway":
            gateway = start_gateway(server, tmp_path)
        url = (gateway or server).url
        for leg in LEGS:
            result, output = run_leg(leg, url, tmp_path / leg.name)
            assert result.scenarios > 0, f"leg {leg.name}: the harness wrote no results\n{output[-3000:]}"
            total = harness_total(output)
            assert total == (result.passed, len(result.failed)), (
                f"leg {leg.name}: checks.json counts {result.passed} passed / {len(result.failed)} failed "
                f"but the harness reported {total} (a scenario crashed?)\n{output[-3000:]}"
            )
            tolerated = 0
            for scenario, check, message in result.must_succeed if leg.harness == "alpha" else ():
                unexpected.append(f"[{target} {leg.name}] {scenario} / {check}: {message}")
            for scenario, check, message in result.failed:
                entry = next((a for a in allowed if a.covers(target, leg.name, scenario, check)), None)
                if entry is None:
                    unexpected.append(f"[{target} {leg.name}] {scenario} / {check}: {message}")
                else:
                    used.add(entry)
                    tolerated += 1
            summaries.append(
                f"{target:<8} {leg.name:<16} {result.scenarios:>3} scenarios  {result.passed:>4} passed  "
                f"{len(result.failed):>3} failed ({tolerated} expected)"
            )
    finally:
        if gateway is not None:
            gateway.stop()
        server.stop()
    stale = [
        f"{a.scenario} / {a.check or '*'}"
        for a in allowed
        if a not in used and (a.targets is None or target in a.targets)
    ]
    with capsys.disabled():  # the per-leg summary is shown even when output is captured
        print(f"\nconformance per leg ({target}):\n  " + "\n  ".join(summaries))
        if stale:
            print("expected failures that now pass (remove them from expected-failures.yml):\n  " + "\n  ".join(stale))
    assert not unexpected, "unexpected conformance failures:\n" + "\n".join(unexpected)
