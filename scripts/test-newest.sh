#!/usr/bin/env bash
# Runs the whole test command against the newest versions the dependency ranges allow, in a
# separate virtual environment (.venv-newest), so a breaking release is seen here before users
# see it. If it passes, `bash scripts/lock.sh --upgrade` bumps the lock; if not, fix the code or narrow
# the range in pyproject.toml. Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
newest="$(mktemp)"
trap 'rm -f "$newest"' EXIT
bash scripts/lock.sh --upgrade "$newest" >/dev/null
echo "== newest versions the ranges allow (differences from the lock):"
diff <(grep -E '^[A-Za-z0-9]' requirements/test-py311-linux.txt) <(grep -E '^[A-Za-z0-9]' "$newest") || true
MCPLANE_VENV=.venv-newest MCPLANE_LOCK="$newest" bash scripts/test.sh "$@"
