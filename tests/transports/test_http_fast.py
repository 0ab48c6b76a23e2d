"""Pieces of the HTTP hot path alone: the remembered ``Accept`` verdicts."""

from __future__ import annotations

import pytest

from mcplane.transports import http_fast
from mcplane.transports.http_fast import accepts_json

ACCEPTS = [
    ("application/json, text/event-stream", True),
    ("text/event-stream, application/json", True),
    ("application/json", True),
    ("Application/JSON; q=0.9", True),
    ("application/*", True),
    ("*/*", True),
    ("text/event-stream", False),
    ("text/html, application/xml", False),
    ("", False),
    ("application/jsonx", False),
]


@pytest.mark.parametrize(("accept", "verdict"), ACCEPTS)
def test_a_remembered_verdict_is_the_parsed_one(accept: str, verdict: bool) -> None:
    assert accepts_json(accept) is verdict
    assert accepts_json(accept) is verdict  # remembered
    assert http_fast._accept_verdicts[accept] is verdict  # pyright: ignore[reportPrivateUsage]


def test_remembered_accept_verdicts_are_bounded() -> None:
    for i in range(1000):
        assert accepts_json(f"application/json; v={i}")
    assert len(http_fast._accept_verdicts) <= http_fast._ACCEPT_VERDICTS_KEPT  # pyright: ignore[reportPrivateUsage]
