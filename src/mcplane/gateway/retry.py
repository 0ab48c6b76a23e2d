"""When an upstream call may be tried again, and how long to wait first.

A call is retried only when repeating it is safe: the tool is annotated ``readOnlyHint`` or
``idempotentHint``, its name matches one of the upstream's ``retryable`` globs, or its policy says
``retryable: true`` (resource reads and prompt gets are reads, always safe). Waits grow
exponentially with full jitter and never run past the caller's deadline.
"""

from __future__ import annotations

import fnmatch
import random
from collections.abc import Callable, Iterable
from typing import Any

from mcplane.gateway.config import RetryConfig

__all__ = ["backoff", "may_retry"]


def may_retry(tool: str, retryable: bool | None, annotations: Any, globs: Iterable[str]) -> bool:
    """Whether ``tool`` (its upstream name) may be called again after a failed attempt;
    ``retryable`` is its policy's (``None`` when the policy does not say)."""
    if retryable is not None:
        return retryable
    if annotations is not None and (
        getattr(annotations, "read_only_hint", None) or getattr(annotations, "idempotent_hint", None)
    ):
        return True
    return any(fnmatch.fnmatchcase(tool, glob) for glob in globs)


def backoff(
    retry: int, config: RetryConfig, *, remaining: float | None = None, rand: Callable[[], float] = random.random
) -> float:
    """Seconds to wait before retry number ``retry`` (1 for the first): full jitter over
    ``min(max_backoff, backoff * 2 ** (retry - 1))``, capped by the time ``remaining``."""
    ceiling = min(config.max_backoff, config.backoff * 2 ** (retry - 1))
    wait = ceiling * rand()
    return wait if remaining is None else max(0.0, min(wait, remaining))
