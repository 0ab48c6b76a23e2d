"""A circuit breaker per endpoint: closed → open → half-open → closed, on an injectable clock.

* **closed**: calls pass; ``failures`` consecutive failures (or, when ``error_rate`` is set, that
  share of failures among at least ``min_calls`` calls in the last ``window`` seconds) open it.
* **open**: calls are refused at once (``circuit_open`` with ``retry_after_ms``) for ``cool_down``.
* **half-open**: after the cool-down one probe call is let through; its success closes the
  circuit, its failure opens it for another cool-down.

State is process-local (one breaker object per endpoint); sharing it across replicas through a
backend is future work.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Literal

from mcplane.gateway.config import BreakerConfig

__all__ = ["CircuitBreaker", "State"]

State = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    def __init__(self, config: BreakerConfig | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config or BreakerConfig()
        self.clock = clock
        self._state: State = "closed"
        self._consecutive = 0
        self._opened_at = 0.0
        self._probing = False
        self._outcomes: deque[tuple[float, bool]] = deque()

    @property
    def state(self) -> State:
        if self._state == "open" and self.clock() - self._opened_at >= self.config.cool_down:
            return "half_open"
        return self._state

    def available(self) -> bool:
        """Whether a call may be sent now (without claiming the half-open probe)."""
        state = self.state
        return state == "closed" or (state == "half_open" and not self._probing)

    def acquire(self) -> bool:
        """Claim the right to send one call: always when closed, once per cool-down when half-open."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._probing:
            self._state = "half_open"
            self._probing = True
            return True
        return False

    def retry_after(self) -> float:
        """Seconds until the next probe may go (0 when calls may go now)."""
        if self._state != "open":
            return 0.0
        return max(0.0, self.config.cool_down - (self.clock() - self._opened_at))

    def success(self) -> None:
        self._record(True)
        self._consecutive = 0
        if self._state != "closed":
            self._state = "closed"
            self._probing = False
            self._outcomes.clear()

    def failure(self) -> None:
        self._record(False)
        self._consecutive += 1
        if self._state == "half_open" or self._consecutive >= self.config.failures or self._rate_exceeded():
            self._open()

    def release(self) -> None:
        """A claimed call ended without a verdict (cancelled by its caller): free the probe slot."""
        self._probing = False

    def _open(self) -> None:
        self._state = "open"
        self._opened_at = self.clock()
        self._probing = False

    def _record(self, ok: bool) -> None:
        if self.config.error_rate is None:
            return
        now = self.clock()
        self._outcomes.append((now, ok))
        horizon = now - self.config.window
        while self._outcomes and self._outcomes[0][0] < horizon:
            self._outcomes.popleft()

    def _rate_exceeded(self) -> bool:
        rate = self.config.error_rate
        if rate is None or len(self._outcomes) < self.config.min_calls:
            return False
        failed = sum(1 for _, ok in self._outcomes if not ok)
        return failed / len(self._outcomes) >= rate

    def __repr__(self) -> str:
        return f"CircuitBreaker(state={self.state!r}, consecutive_failures={self._consecutive})"
