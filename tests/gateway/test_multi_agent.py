"""examples/multi-agent: two agents that reach each other only through the gateway, as real processes."""

from __future__ import annotations

import importlib.util
import json
import signal
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import httpx
import pytest

from mcplane.errors import DependencyUnavailable
from tests.conftest import REPO_ROOT

EXAMPLE = REPO_ROOT / "examples" / "multi-agent"
WAIT = 30.0


def _example() -> ModuleType:
    """examples/multi-agent/run.py as a module (its folder name is no package name)."""
    name = "multi_agent_run"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, EXAMPLE / "run.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


def test_the_one_command_checks_a_trade_through_the_gateway_and_stops_cleanly() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE / "run.py")], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    head, _, rest = done.stdout.partition("\n")
    assert "compliance__check_compliance" in head
    body, _, tail = rest.rpartition("}\n")
    answer: dict[str, Any] = json.loads(body + "}")
    assert answer["decision"] == "reject"
    assert answer["rules"] == ["EU-MAR-17", "EU-SSR-12"]  # both came from the regulatory agent
    assert tail.strip() == "stopped: gateway 0, compliance 0, regulatory 0"


async def _wait_unready(base: str) -> None:
    """Until the gateway's /ready fails (it has seen the regulatory agent go)."""
    async with httpx.AsyncClient(timeout=2.0) as http:
        with anyio.fail_after(WAIT):
            while True:
                if (await http.get(f"{base}/ready")).status_code != 200:
                    return
                await anyio.sleep(0.05)  # polling under the bound above


async def test_a_dead_regulatory_agent_makes_checks_fail_fast_with_dependency_unavailable(tmp_path: Path) -> None:
    example = _example()
    trade = {"jurisdiction": "US", "instrument": "ACME", "notional": 1_000_000}
    with example.running(tmp_path) as agents:
        assert (await example.check(agents.gateway.url, trade))["decision"] == "approve"

        agents.regulatory.stop(signal.SIGKILL)
        # A generous deadline: a check that hung on the dead agent would end in deadline_exceeded.
        with pytest.raises(DependencyUnavailable) as first:
            await example.check(agents.gateway.url, trade, timeout=WAIT)
        assert first.value.details == {"dependency": "regulatory"}  # from the gateway or the agent

        await _wait_unready(agents.gateway.base)
        with pytest.raises(DependencyUnavailable) as refused:
            await example.check(agents.gateway.url, trade, timeout=WAIT)
        # depends_on: the gateway refused it without calling the compliance agent.
        assert refused.value.message == "dependency 'regulatory' is unavailable"
        assert refused.value.details == {"dependency": "regulatory"}
        async with httpx.AsyncClient(timeout=2.0) as http:  # the gateway itself still serves
            assert (await http.get(f"{agents.gateway.base}/health")).status_code == 200
    assert agents.exit_codes["gateway"] == 0
    assert agents.exit_codes["compliance"] == 0


def test_the_readme_and_the_gateway_guide_show_the_command() -> None:
    command = "python examples/multi-agent/run.py"
    readme = (EXAMPLE / "README.md").read_text(encoding="utf-8")
    guide = (REPO_ROOT / "docs" / "gateway.md").read_text(encoding="utf-8")
    for text in (readme, guide):
        assert f"```bash\n{command}\n```" in text
    assert "../examples/multi-agent/README.md" in guide
