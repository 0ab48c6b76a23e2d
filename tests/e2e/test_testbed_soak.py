"""A short soak (``scripts/soak.py``) per transport: after thousands of calls, with connections and
sessions made and dropped all along, the server's open file descriptors, asyncio tasks, threads and
child processes show no growth trend (counts, not timings). ``MCPLANE_SOAK_CALLS`` sets the calls
per transport (3,000 by default; the report's run used 100,000)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "scripts"))  # the scripts import their siblings by name
from scripts.soak import TOLERANCE, soak

CALLS = int(os.environ.get("MCPLANE_SOAK_CALLS", "3000"))

pytestmark = pytest.mark.timeout(600)


@pytest.mark.parametrize("transport", ["http", "ws", "stdio"])
def test_soak_resources_stay_flat(transport: str, tmp_path: Path) -> None:
    result = soak(transport, CALLS, 8, tmp_path)
    summary = result.summary()
    print(json.dumps({k: v for k, v in summary.items() if k != "samples"}))
    assert result.errors == 0, result.error_samples
    assert result.calls >= CALLS
    assert len(result.samples) >= 6
    trends = result.trends()
    for name, tolerance in TOLERANCE.items():
        assert trends[name]["trend"] <= tolerance, f"{name} grows with the calls: {trends[name]} ({transport})"
    # No transport leaves a child process behind (mcplane's servers start none).
    assert trends["children"]["max"] == 0
