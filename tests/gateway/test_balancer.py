from __future__ import annotations

from dataclasses import dataclass

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
