#!/usr/bin/env bash
# The test command: installs mcplane's dependencies, exact, from the committed lock
# (requirements/test-py311-linux.txt) into .venv, then mcplane itself; installs Node 22 and the
# pinned outside clients and harnesses (scripts/install-test-deps.sh); then runs ruff, pyright
# and pytest. Extra arguments go to pytest (for example: bash scripts/test.sh -k websocket).
# pytest runs test files in parallel worker processes (pytest-xdist, one file per worker at a
# time): as many as the machine has CPUs, at most 4; MCPLANE_TEST_WORKERS sets another number
# (0: everything in one process).
# MCPLANE_VENV and MCPLANE_LOCK choose another environment and lock (scripts/test-newest.sh).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
python="${PYTHON:-python3}"
venv="${MCPLANE_VENV:-.venv}"
lock="${MCPLANE_LOCK:-requirements/test-py311-linux.txt}"
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip 2>/dev/null >/dev/null
"$venv/bin/python" -m pip install --quiet -r "$lock"
"$venv/bin/python" -m pip install --quiet --no-deps -e .
"$venv/bin/python" -m pip check
bash scripts/install-test-deps.sh
echo "== ruff"
"$venv/bin/ruff" check src tests examples bench
"$venv/bin/ruff" format --check src tests examples bench
echo "== pyright"
"$venv/bin/pyright" --pythonpath "$venv/bin/python"
echo "== pytest"
workers="${MCPLANE_TEST_WORKERS:-$(nproc 2>/dev/null || echo 2)}"
if [ "$workers" -gt 4 ]; then workers=4; fi
"$venv/bin/pytest" -n "$workers" --dist loadfile "$@"
