"""Refusals at the HTTP layer, counted and sampled in the log.

A request refused before it reaches the protocol (401 unauthenticated, 403 origin not allowed,
421 host not allowed, 400 duplicate Host/Origin, 431 headers too large) leaves no call log line,
so a security team would otherwise not see a scan or a credential-stuffing run. Each refusal:

- increments ``mcplane_http_refusals_total{status,reason}`` (``reason`` is one of a fixed set of
  codes, never client text, so a client cannot grow the number of series);
- is logged at WARNING as one ``http_refused`` event, at most one line per ``interval`` seconds,
  with the count of refusals left out since the last line.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from mcplane.observability.logs import EVENT_KEY

__all__ = ["Refusals", "peer_of"]

logger = logging.getLogger("mcplane.http")


def peer_of(scope: Mapping[str, Any]) -> str:
    """The address of the peer an ASGI ``scope`` came from (empty when unknown)."""
    client = scope.get("client")
    return str(client[0]) if client else ""


class Refusals:
    """Called as ``refusals(status, reason, peer)`` wherever the HTTP layer refuses a request."""

    def __init__(self, *, interval: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self.counter: Any = None
        """``mcplane_http_refusals_total`` while metrics are on (set by the HTTP tier)."""
        self._last = -math.inf
        self._left_out = 0

    def __call__(self, status: int, reason: str, peer: str = "") -> None:
        if self.counter is not None:
            self.counter.labels(status=str(status), reason=reason).inc()
        now = self.clock()
        if now < self._last + self.interval:
            self._left_out += 1
            return
        left_out, self._last, self._left_out = self._left_out, now, 0
        event = {"event": "http_refused", "status": status, "reason": reason, "peer": peer, "left_out": left_out}
        logger.warning(
            "refused a request from %s: %d %s (%d more since the last such line)",
            peer or "a client",
            status,
            reason,
            left_out,
            extra={EVENT_KEY: event},
        )
