from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcplane.gateway.balancer import Balancer


@dataclass(eq=False)
class Fake:
    name: str
    in_flight: int = 0
    up: bool = True

    def can_take(self) -> bool:
        return self.up


def test_round_robin_cycles_and_skips_down_endpoints() -> None:
    a, b, c = Fake("a"), Fake("b"), Fake("c")
    balancer = Balancer("round_robin")
    assert [balancer.pick([a, b, c]).name for _ in range(4)] == ["a", "b", "c", "a"]  # type: ignore[union-attr]
    b.up = False
    assert [balancer.pick([a, b, c]).name for _ in range(3)] == ["c", "a", "c"]  # type: ignore[union-attr]


def test_least_in_flight_prefers_idle_and_breaks_ties_in_turn() -> None:
    a, b, c = Fake("a", 2), Fake("b", 0), Fake("c", 0)
    balancer = Balancer("least_in_flight")
    assert balancer.pick([a, b, c]) is b
    assert balancer.pick([a, b, c]) is c
    c.in_flight = 5
    assert balancer.pick([a, b, c]) is b


def test_avoid_prefers_untried_but_falls_back() -> None:
    a, b = Fake("a"), Fake("b")
    balancer = Balancer()
    assert balancer.pick([a, b], avoid=[a]) is b
    assert balancer.pick([a, b], avoid=[a, b]) is a


def test_none_when_nothing_can_take_a_call() -> None:
    assert Balancer().pick([Fake("a", up=False)]) is None
    assert Balancer().pick([]) is None


@settings(max_examples=300, deadline=None)
@given(
    strategy=st.sampled_from(["round_robin", "least_in_flight"]),
    steps=st.lists(
        st.tuples(st.integers(min_value=0, max_value=3), st.booleans(), st.integers(0, 5), st.booleans()),
        min_size=1,
        max_size=20,
    ),
)
def test_one_endpoint_picks_as_the_general_path(strategy: Any, steps: list[tuple[int, bool, int, bool]]) -> None:
    """The one-replica shortcut picks what the general path picks and leaves the same turn behind,
    over lists of one to four endpoints (up or down, busy or idle, tried or not) in any order."""
    fast, general = Balancer(strategy), Balancer(strategy)
    pool = [Fake(name) for name in "abcd"]
    for count, up, in_flight, tried in steps:
        endpoints = pool[: count + 1]
        for endpoint in endpoints:
            endpoint.up, endpoint.in_flight = up or endpoint is not endpoints[0], in_flight
        avoid = endpoints[:1] if tried else []
        assert fast.pick(endpoints, avoid) is general._among(endpoints, avoid)  # pyright: ignore[reportPrivateUsage]
        assert fast._next == general._next  # pyright: ignore[reportPrivateUsage]


def test_one_endpoint_builds_no_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    balancer = Balancer()
    only = Fake("a")

    def general(*args: Any) -> Any:
        raise AssertionError("the general path ran")

    monkeypatch.setattr(balancer, "_among", general)
    assert balancer.pick([only]) is only
    assert balancer.pick([only], [only]) is only  # tried already: still the only one
    only.up = False
    assert balancer.pick([only]) is None
