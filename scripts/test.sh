#!/usr/bin/env bash
# The test command: installs mcplane with its test extras into .venv, installs Node 22 and the
# pinned conformance harnesses (scripts/install-test-deps.sh), then runs ruff, pyright and pytest.
# Extra arguments go to pytest (for example: bash scripts/test.sh -k websocket).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip >/dev/null
.venv/bin/python -m pip install --quiet -e ".[test,fast]"
bash scripts/install-test-deps.sh
echo "== ruff"
.venv/bin/ruff check src tests examples bench
.venv/bin/ruff format --check src tests examples bench
echo "== pyright"
.venv/bin/pyright --pythonpath .venv/bin/python
echo "== pytest"
.venv/bin/pytest "$@"
