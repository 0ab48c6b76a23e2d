"""The call pipeline: one chain of middleware in fixed, named slots.

Every tool call, resource read and prompt get passes through the same chain, whatever provider
(local function or gateway upstream) serves it::

    errors → tracing → metrics → authenticate → audit → authorize → budget
           → rate_limit → guard → validate → cache → timeout → provider

A middleware is ``async (call, call_next) -> result``. Slots fix the order, so a layer added
later (or configured from a file) lands in its place without anyone re-sorting a list; an
empty slot costs nothing because :meth:`Pipeline.compose` skips it.

``guard`` (output guards, :mod:`mcplane.middleware.guard`) sits inside ``audit`` and
``metrics``, so a result it refuses is recorded and counted with its code and the audit hashes
what the caller got; outside ``validate``, so it never scans a result larger than
``limits.max_result_bytes`` (refused there first); and outside ``cache``, so every answer is
scanned, cache hits included, and a changed guard applies at once to results cached before.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from mcplane.context import Context

__all__ = ["SLOTS", "Call", "CallNext", "Middleware", "Pipeline"]

SLOTS: tuple[str, ...] = (
    "errors",
    "tracing",
    "metrics",
    "authenticate",
    "audit",
    "authorize",
    "budget",
    "rate_limit",
    "guard",
    "validate",
    "cache",
    "timeout",
)

CallKind = Literal["tool", "resource", "prompt"]


@dataclass(frozen=True, slots=True)
class Call:
    """One call on its way through the pipeline. Change it with :meth:`replace`."""

    kind: CallKind
    name: str
    arguments: Mapping[str, Any]
    context: Context
    policy: Mapping[str, Any] = field(default_factory=dict)
    """The call's matched policy (timeout, annotations, ...), merged from code and config."""

    def replace(self, **changes: Any) -> Call:
        return replace(self, **changes)


CallNext = Callable[[Call], Awaitable[Any]]


class Middleware(Protocol):
    async def __call__(self, call: Call, call_next: CallNext) -> Any: ...


class Pipeline:
    """Middleware by slot name; :meth:`compose` folds them around a provider."""

    def __init__(self) -> None:
        self._slots: dict[str, Middleware] = {}

    def set(self, slot: str, middleware: Middleware | None) -> None:
        if slot not in SLOTS:
            raise ValueError(f"unknown pipeline slot {slot!r}; slots are {', '.join(SLOTS)}")
        if middleware is None:
            self._slots.pop(slot, None)
        else:
            self._slots[slot] = middleware

    def get(self, slot: str) -> Middleware | None:
        return self._slots.get(slot)

    @property
    def active(self) -> tuple[str, ...]:
        """The filled slots, outermost first."""
        return tuple(slot for slot in SLOTS if slot in self._slots)

    def compose(self, provider: CallNext) -> CallNext:
        chain = provider
        for slot in reversed(SLOTS):
            middleware = self._slots.get(slot)
            if middleware is not None:
                chain = _bind(middleware, chain)
        return chain


def _bind(middleware: Middleware, call_next: CallNext) -> CallNext:
    async def step(call: Call) -> Any:
        return await middleware(call, call_next)

    return step
