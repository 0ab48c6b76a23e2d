"""Per-tool policy values given in code (decorator keywords) and their parsing."""

from __future__ import annotations

import re
from typing import Any

from mcplane.errors import ConfigError

__all__ = ["parse_duration"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: Any, *, field: str = "duration") -> float:
    """``2``, ``2.5``, ``"2s"``, ``"250ms"``, ``"5m"``, ``"1h"`` → seconds (a positive float)."""
    if isinstance(value, bool):
        raise ConfigError(f"{field}: expected a duration such as 2, '2s', '250ms' or '5m', got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise ConfigError(f"{field}: expected a duration such as 2, '2s', '250ms' or '5m', got {value!r}")
    if seconds <= 0:
        raise ConfigError(f"{field}: must be positive, got {value!r}")
    return seconds
