"""Durations in decorator keywords: numbers are seconds, strings carry a unit."""

from __future__ import annotations

import pytest

from mcplane.errors import ConfigError
from mcplane.policy import parse_duration


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (2, 2.0),
        (2.5, 2.5),
        (0.001, 0.001),
        ("2", 2.0),
        ("2s", 2.0),
        ("1.5s", 1.5),
        ("250ms", 0.25),
        ("100ms", 0.1),
        ("5m", 300.0),
        ("1h", 3600.0),
        (" 3 s ", 3.0),
    ],
)
def test_parses(value: object, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", [0, -1, "0s", "0ms", -0.5])
def test_rejects_non_positive(value: object) -> None:
    with pytest.raises(ConfigError, match="must be positive"):
        parse_duration(value)


@pytest.mark.parametrize("value", [True, False, None, "", "fast", "2 days", "2d", "1e3", "-2s", "s", [2], "2S"])
def test_rejects_what_is_not_a_duration(value: object) -> None:
    with pytest.raises(ConfigError, match="expected a duration"):
        parse_duration(value)


def test_error_names_the_field() -> None:
    with pytest.raises(ConfigError, match=r"^tool 'slow' timeout: expected a duration"):
        parse_duration("soon", field="tool 'slow' timeout")
