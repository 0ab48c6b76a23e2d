"""A circuit breaker per endpoint: closed → open → half-open → closed, on an injectable clock.

* **closed**: calls pass; ``failures`` consecutive failures (or, when ``error_rate`` is set, that
  share of failures among at least ``min_calls`` calls in the last ``window`` seconds) open it.
* **open**: calls are refused at once (``circuit_open`` with ``retry_after_ms``) for ``cool_down``.
* **half-open**: after the cool-down one probe call is let through; its success closes the
  circuit, its failure opens it for another cool-down.

Failures are counted by each process. The *state* can be shared by several gateway replicas
(:mod:`mcplane.gateway.shared`): then :attr:`CircuitBreaker.shared` is set, every local
transition is reported to it (it publishes the transition to the other replicas), transitions
the other replicas made arrive through :meth:`CircuitBreaker.adopt`, and the half-open probe is
claimed through the shared store (:meth:`CircuitBreaker.claim`), so one probe goes out across
all replicas. Without it the breaker is process-local.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from mcplane.gateway.config import BreakerConfig

if TYPE_CHECKING:
    from mcplane.gateway.shared import SharedHandle

__all__ = ["CircuitBreaker", "Listener", "State"]

State = Literal["closed", "open", "half_open"]
Listener = Callable[["CircuitBreaker", State, bool], None]
"""Called after every state change: ``(breaker, new_state, local)``; ``local`` is false for an adopted one."""


class CircuitBreaker:
    def __init__(self, config: BreakerConfig | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config or BreakerConfig()
        self.clock = clock
        self._state: State = "closed"
        self._consecutive = 0
        self._opened_at = 0.0
        self._probing = False
        self._outcomes: deque[tuple[float, bool]] = deque()
        self.listeners: list[Listener] = []
        self.shared: SharedHandle | None = None
        """Set when the state is shared with other replicas (see :mod:`mcplane.gateway.shared`)."""
        self.generation = 0
        """The generation of the shared state last adopted or written (0: none)."""

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
            self._begin_probe()
            return True
        return False

    async def claim(self, *, lease: float | None = None) -> bool:
        """:meth:`acquire`, asking the shared store for the probe when the state is shared.

        When closed (the common case) this never waits: no round trip to any store.
        """
        shared = self.shared
        if shared is None or self._state == "closed" or self.state != "half_open" or self._probing:
            return self.acquire()
        return await shared.claim(self, lease)

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
            self._notify("closed", local=True)

    def failure(self) -> None:
        self._record(False)
        self._consecutive += 1
        if self._state == "half_open" or self._consecutive >= self.config.failures or self._rate_exceeded():
            self._open(self.clock())
            self._notify("open", local=True)

    def release(self) -> None:
        """A claimed call ended without a verdict (cancelled by its caller): free the probe slot."""
        if self._probing:
            self._probing = False
            if self.shared is not None:
                self.shared.released(self)

    # ----------------------------------------------------------------- shared state
    def adopt(self, state: State, retry_after: float, generation: int) -> None:
        """Take a state another replica set: ``open`` refuses calls for ``retry_after`` seconds."""
        self.generation = max(self.generation, generation)
        if state == "closed":
            changed = self._state != "closed"
            self._state, self._probing, self._consecutive = "closed", False, 0
            self._outcomes.clear()
        else:
            changed = self._state != "open" or self._probing
            retry_after = max(0.0, min(retry_after, self.config.cool_down))
            self._open(self.clock() - (self.config.cool_down - retry_after))
        if changed:
            self._notify(state, local=False)

    def begin_probe(self) -> None:
        """The shared store granted this replica the half-open probe."""
        self._begin_probe()

    # ----------------------------------------------------------------- internals
    def _begin_probe(self) -> None:
        self._state = "half_open"
        self._probing = True
        self._notify("half_open", local=True)

    def _open(self, at: float) -> None:
        self._state = "open"
        self._opened_at = at
        self._probing = False

    def _notify(self, state: State, *, local: bool) -> None:
        for listener in self.listeners:
            listener(self, state, local)

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
