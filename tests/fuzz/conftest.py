"""hypothesis keeps its caches (unicode tables, constants) in the system's temporary directory, not
in the work tree; the fuzz settings keep no example database (see payloads.FUZZ_SETTINGS)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis.configuration import set_hypothesis_home_dir

set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "mcplane-hypothesis")
