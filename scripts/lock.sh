#!/usr/bin/env bash
# Writes the test lock: the versions pyproject.toml allows (with the test and fast extras) for
# CPython 3.11 on Linux, exact, in requirements/test-py311-linux.txt. Without --upgrade it keeps
# every pin that still satisfies pyproject.toml (so adding a dependency changes only what it
# needs); `bash scripts/lock.sh --upgrade` bumps everything to the newest allowed, on purpose. The test command installs from that file, so a release
# elsewhere never changes what the suite runs against until this script is run and its diff
# committed. Run scripts/test-newest.sh first to see whether the newest set passes.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
python="${PYTHON:-python3}"
tooling="$root/.tools/lock-venv"
if [ ! -x "$tooling/bin/uv" ]; then
  "$python" -m venv "$tooling"
  "$tooling/bin/python" -m pip install --quiet "uv>=0.9"
fi
upgrade=()
if [ "${1:-}" = "--upgrade" ]; then upgrade=(--upgrade); shift; fi
out="${1:-requirements/test-py311-linux.txt}"
"$tooling/bin/uv" pip compile pyproject.toml --extra test --extra fast \
  --python-version 3.11 --python-platform linux "${upgrade[@]}" --quiet \
  --custom-compile-command "bash scripts/lock.sh --upgrade" -o "$out"
echo "wrote $out"
