"""Choosing a replica: round-robin or least-in-flight, skipping endpoints that cannot take a call.

An endpoint can take a call when it is connected and its circuit breaker lets one through. The
balancer never claims the breaker's half-open probe itself; the caller does, right before sending.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Literal, Protocol, TypeVar

__all__ = ["Balancer", "Candidate"]


class Candidate(Protocol):
    @property
    def in_flight(self) -> int: ...
    def can_take(self) -> bool: ...


C = TypeVar("C", bound=Candidate)


class Balancer:
    def __init__(self, strategy: Literal["round_robin", "least_in_flight"] = "round_robin") -> None:
        self.strategy = strategy
        self._next = 0

    def pick(self, endpoints: Sequence[C], avoid: Collection[C] = ()) -> C | None:
        """The endpoint for the next attempt, preferring ones not in ``avoid`` (tried already); ``None``
        when no endpoint can take a call."""
        count = len(endpoints)
        if count == 1:  # one replica, the usual configuration: what :meth:`_among` picks, without its lists
            only = endpoints[0]
            if not only.can_take():
                return None
            self._next = 0
            return only
        return self._among(endpoints, avoid)

    def _among(self, endpoints: Sequence[C], avoid: Collection[C]) -> C | None:
        """:meth:`pick`, for any number of endpoints."""
        count = len(endpoints)
        if count == 0:
            return None
        start = self._next % count
        order = [endpoints[(start + i) % count] for i in range(count)]
        ready = [e for e in order if e.can_take()]
        if not ready:
            return None
        fresh = [e for e in ready if e not in avoid] or ready
        # least_in_flight ties go in round-robin order (min keeps the first of equals)
        chosen = min(fresh, key=lambda e: e.in_flight) if self.strategy == "least_in_flight" else fresh[0]
        self._next = (endpoints.index(chosen) + 1) % count
        return chosen
