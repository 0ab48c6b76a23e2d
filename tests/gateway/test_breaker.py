from __future__ import annotations

from mcplane.gateway.breaker import CircuitBreaker
from mcplane.gateway.config import BreakerConfig


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_consecutive_failures_and_probes_after_cool_down() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(BreakerConfig(failures=3, cool_down=10), clock=clock)
    for _ in range(2):
        assert breaker.acquire()
        breaker.failure()
    assert breaker.state == "closed"
    breaker.failure()
    assert breaker.state == "open"
    assert not breaker.acquire()
    assert breaker.retry_after() == 10
    clock.now += 9.5
    assert not breaker.available()
    clock.now += 0.5
    assert breaker.state == "half_open"
    assert breaker.acquire()  # the one probe
    assert not breaker.acquire()  # no second probe while the first is out
    breaker.success()
    assert breaker.state == "closed"
    assert breaker.acquire()


def test_failed_probe_reopens_for_another_cool_down() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(BreakerConfig(failures=1, cool_down=5), clock=clock)
    breaker.failure()
    clock.now += 5
    assert breaker.acquire()
    breaker.failure()
    assert breaker.state == "open"
    assert breaker.retry_after() == 5


def test_success_resets_the_consecutive_count() -> None:
    breaker = CircuitBreaker(BreakerConfig(failures=2), clock=FakeClock())
    breaker.failure()
    breaker.success()
    breaker.failure()
    assert breaker.state == "closed"


def test_released_probe_can_be_claimed_again() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(BreakerConfig(failures=1, cool_down=1), clock=clock)
    breaker.failure()
    clock.now += 1
    assert breaker.acquire()
    breaker.release()  # the caller went away without a verdict
    assert breaker.acquire()


def test_error_rate_window() -> None:
    clock = FakeClock()
    config = BreakerConfig(failures=100, error_rate=0.5, min_calls=4, window=10)
    breaker = CircuitBreaker(config, clock=clock)
    breaker.failure()
    breaker.success()
    breaker.failure()
    assert breaker.state == "closed"  # 3 calls: below min_calls
    clock.now += 11  # all of them leave the window
    breaker.success()
    breaker.failure()
    breaker.success()
    assert breaker.state == "closed"
    breaker.failure()  # 2 of 4 in the window failed
    assert breaker.state == "open"
