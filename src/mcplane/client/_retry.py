"""Retrying one call: exponential backoff with full jitter, ``retry_after_ms``, never past the deadline.

Built on ``tenacity`` (its wait, stop and attempt loop); what is mcplane's is *which* failures
are retried, decided by the client when it raises a :class:`Failure`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.stop import stop_base
from tenacity.wait import wait_base, wait_random_exponential

from mcplane.errors import MCPlaneError

__all__ = ["Failure", "RetryPolicy", "run_with_retries"]

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently a client retries a call that may be retried.

    The wait before retry *n* (1-based) is uniform in ``[0, min(max_backoff, backoff *
    multiplier ** (n - 1))]`` ("full jitter", so clients that failed together do not retry
    together), or the server's ``retry_after_ms`` when that is longer.
    """

    attempts: int = 3
    """Attempts in all, the first included; 1 never retries."""
    backoff: float = 0.1
    """Seconds: the ceiling of the first wait."""
    multiplier: float = 2.0
    max_backoff: float = 5.0

    def __post_init__(self) -> None:
        if not _is_positive_int(self.attempts):
            raise ValueError(f"attempts must be an int >= 1, got {self.attempts!r}")
        for name in ("backoff", "multiplier", "max_backoff"):
            value = getattr(self, name)
            if not value >= 0:
                raise ValueError(f"{name} must be a non-negative number, got {value!r}")


def _is_positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


class Failure(Exception):
    """How an attempt fails: :attr:`error` is what the caller will see, :attr:`result` the raw
    ``isError`` result if there was one, :attr:`retryable` whether another attempt may follow."""

    def __init__(self, error: BaseException, *, result: Any = None, retryable: bool = False) -> None:
        super().__init__(error)
        self.error = error
        self.result = result
        self.retryable = retryable


def _retry_after(state: RetryCallState) -> float:
    outcome = state.outcome
    failure = outcome.exception() if outcome is not None else None
    if isinstance(failure, Failure) and isinstance(failure.error, MCPlaneError):
        millis = failure.error.retry_after_ms
        if millis is not None:
            return millis / 1000.0
    return 0.0


class _Wait(wait_base):
    def __init__(self, policy: RetryPolicy) -> None:
        self.jittered = wait_random_exponential(
            multiplier=policy.backoff, max=policy.max_backoff, exp_base=policy.multiplier
        )

    def __call__(self, retry_state: RetryCallState) -> float:
        return max(self.jittered(retry_state), _retry_after(retry_state))


class _StopAtDeadline(stop_base):
    """Stop when the coming wait would end at or after the deadline: a retry then cannot answer in time."""

    def __init__(self, deadline: float | None, clock: Callable[[], float]) -> None:
        self.deadline = deadline
        self.clock = clock

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self.deadline is not None and self.clock() + retry_state.upcoming_sleep >= self.deadline


async def run_with_retries(
    attempt: Callable[[], Awaitable[_T]],
    policy: RetryPolicy,
    *,
    deadline: float | None,
    clock: Callable[[], float],
    sleep: Callable[[float], Awaitable[Any]],
    before_sleep: Callable[[RetryCallState], None] | None = None,
) -> _T:
    """Run ``attempt`` until it returns, raises anything but a retryable :class:`Failure`, or the
    policy or the deadline says stop; then the last failure propagates."""
    retrying = AsyncRetrying(
        sleep=sleep,
        stop=stop_after_attempt(policy.attempts) | _StopAtDeadline(deadline, clock),
        wait=_Wait(policy),
        retry=retry_if_exception(lambda exc: isinstance(exc, Failure) and exc.retryable),
        before_sleep=before_sleep,
        reraise=True,
    )
    return await retrying(attempt)
