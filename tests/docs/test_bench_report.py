"""The command a bench report names leaves out where the run wrote (paths of the machine it ran on)."""

from __future__ import annotations

import importlib
import sys

from tests.conftest import REPO_ROOT


def test_a_report_names_the_command_without_its_output_paths() -> None:
    sys.path.insert(0, str(REPO_ROOT / "bench"))
    try:
        run = importlib.import_module("run")
    finally:
        sys.path.remove(str(REPO_ROOT / "bench"))
    shown = run.shown_command(
        ["--legs", "http-2026", "--out-dir", "/somewhere/out", "--results=/x/R.md", "--repeat", "3", "--audit-dir", "d"]
    )
    assert shown == "python bench/run.py --legs http-2026 --repeat 3"
    assert run.shown_command([]) == "python bench/run.py"
