"""The call pipeline: one chain of middleware in fixed, named slots.

Every tool call, resource read and prompt get passes through the same chain, whatever provider
(local function or gateway upstream) serves it::

    errors → drain → tracing → metrics → authenticate → audit → authorize → budget
           → rate_limit → guard → validate → app → cache → timeout → provider

A middleware is ``async (call, call_next) -> result``. Slots fix the order, so a layer added
later (or configured from a file) lands in its place without anyone re-sorting a list; an
empty slot costs nothing because :meth:`Pipeline.compose` skips it.

One function fills a plane's slots from its config, :func:`mcplane.stack.build_pipeline`, and
freezes what it built: nothing edits that pipeline afterwards. What only a start makes known
(the transport's drain, observability's providers) is bound to objects already in their slots.
An application's own middleware goes in :attr:`Plane.pipeline <mcplane.Plane.pipeline>` with
:meth:`Pipeline.set`: a slot it fills there is served over the built one (see
:meth:`Pipeline.serve_over`). The ``app`` slot is the application's alone (the config never
fills it): inside ``validate``, so it sees an authenticated, authorized, rate-limited call with
bounded, schema-checked arguments; outside ``cache``, so it runs on cache hits too; inside
``guard`` and ``audit``, so what it returns is scanned and recorded.

``drain`` (:class:`mcplane.middleware.drain.DrainGate`) sits just inside ``errors`` so its
refusals of new calls while the server drains become ordinary error answers, and outside
everything else, so a refused call costs nothing more and a call in flight is counted whole.

``guard`` (output guards, :mod:`mcplane.middleware.guard`) sits inside ``audit`` and
``metrics``, so a result it refuses is recorded and counted with its code and the audit hashes
what the caller got; outside ``validate``, so it never scans a result larger than
``limits.max_result_bytes`` (refused there first); and outside ``cache``, so every answer is
scanned, cache hits included, and a changed guard applies at once to results cached before.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol

from mcplane.tool_policy import EMPTY_POLICY, EMPTY_SOURCE, ToolPolicy, ToolSource

if TYPE_CHECKING:
    from mcplane.context import Context

__all__ = ["SLOTS", "Call", "CallNext", "Middleware", "Pipeline", "PipelineFrozen"]

SLOTS: tuple[str, ...] = (
    "errors",
    "drain",
    "tracing",
    "metrics",
    "authenticate",
    "audit",
    "authorize",
    "budget",
    "rate_limit",
    "guard",
    "validate",
    "app",
    "cache",
    "timeout",
)

CallKind = Literal["tool", "resource", "prompt"]


@dataclass(slots=True)
class Call:
    """One call on its way through the pipeline. Change it with :meth:`replace`.

    ``context`` is the one field a layer assigns in place: the context itself never changes,
    so a layer that learns something about the call (authentication: who calls; the timeout
    slot: the deadline) writes ``call.context = call.context.replace(...)`` before it passes
    the call on. The layers inside it see the new context, and so do the layers outside it
    once the call returns (the call log names the authenticated caller).
    """

    kind: CallKind
    name: str
    arguments: Mapping[str, Any]
    context: Context
    policy: ToolPolicy = EMPTY_POLICY
    """The tool's policy (timeout, limits, access, ...): the decorator's, overridden by the file."""
    source: ToolSource = EMPTY_SOURCE
    """What the tool is: its published schema, annotations and upstream."""

    def replace(self, **changes: Any) -> Call:
        return replace(self, **changes)


CallNext = Callable[[Call], Awaitable[Any]]


class Middleware(Protocol):
    async def __call__(self, call: Call, call_next: CallNext) -> Any: ...


class PipelineFrozen(RuntimeError):
    """A slot of a built (frozen) pipeline was set: build a new pipeline instead."""


class Pipeline:
    """Middleware by slot name; :meth:`compose` folds them around a provider.

    Its own slots (:meth:`set`) are served over those of the pipeline it serves over, if any
    (:meth:`serve_over`): that is how an application's middleware joins the slots the config
    filled. :meth:`freeze` makes it refuse edits; :attr:`revision` counts changes, so a caller
    that keeps a composed chain recomposes only when something changed.
    """

    def __init__(self) -> None:
        self._slots: dict[str, Middleware] = {}
        self._under: Pipeline | None = None
        self._frozen = False
        self.revision = 0

    def set(self, slot: str, middleware: Middleware | None) -> None:
        if slot not in SLOTS:
            raise ValueError(f"unknown pipeline slot {slot!r}; slots are {', '.join(SLOTS)}")
        if self._frozen:
            raise PipelineFrozen(f"the pipeline is built and frozen: slot {slot!r} cannot be set")
        if middleware is None:
            self._slots.pop(slot, None)
        else:
            self._slots[slot] = middleware
        self.revision += 1

    def get(self, slot: str) -> Middleware | None:
        middleware = self._slots.get(slot)
        if middleware is None and self._under is not None:
            return self._under.get(slot)
        return middleware

    def freeze(self) -> Pipeline:
        """Refuse every later :meth:`set` (returns the pipeline)."""
        self._frozen = True
        return self

    @property
    def frozen(self) -> bool:
        return self._frozen

    def serve_over(self, built: Pipeline) -> None:
        """Serve this pipeline's own slots over ``built``, a frozen pipeline that fills the others."""
        if not built.frozen:
            raise ValueError("serve over a built (frozen) pipeline")
        self._under = built
        self.revision += 1

    @property
    def active(self) -> tuple[str, ...]:
        """The filled slots, outermost first."""
        return tuple(slot for slot in SLOTS if self.get(slot) is not None)

    def compose(self, provider: CallNext) -> CallNext:
        chain = provider
        for slot in reversed(SLOTS):
            middleware = self.get(slot)
            if middleware is not None:
                chain = _bind(middleware, chain)
        return chain


def _bind(middleware: Middleware, call_next: CallNext) -> CallNext:
    # A plain function handing back the middleware's coroutine: one coroutine frame per layer, not two.
    def step(call: Call) -> Awaitable[Any]:
        return middleware(call, call_next)

    return step
