"""The ``drain`` slot: count the calls in flight, refuse new ones while the server drains.

A served plane's :class:`~mcplane.observability.lifecycle.Lifecycle` binds the plane's gate
before the plane starts (:meth:`DrainGate.bind`); the plane's pipeline then holds it in the
``drain`` slot, just inside ``errors``, so its refusals and cut-short answers become ordinary
error answers: an ``isError`` tool result, or a JSON-RPC error for resources and prompts. A
plane nobody serves (in-process clients, tests) leaves the slot empty and pays nothing for it.

A call a running call makes through the plane is part of it, never refused.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

import anyio

from mcplane.errors import DependencyUnavailable
from mcplane.middleware.timeout import cancel_scope
from mcplane.pipeline import Call, CallNext

__all__ = ["CUT_SHORT", "SHUTTING_DOWN", "DrainGate"]

SHUTTING_DOWN = "the server is shutting down; retry on another instance"
CUT_SHORT = "the server shut down before the call finished"

_inside_call: ContextVar[bool] = ContextVar("mcplane_inside_gated_call", default=False)


class DrainGate:
    """Counts calls in flight and, once :attr:`draining`, refuses new ones (``dependency_unavailable``)."""

    def __init__(self) -> None:
        self.bound = False
        """A lifecycle serves the plane: the pipeline built at its start puts the gate in its slot."""
        self.draining = False
        self._running: set[anyio.CancelScope] = set()
        self._idle: anyio.Event | None = None

    def bind(self) -> None:
        """A transport's lifecycle will serve the plane: gate its calls from its next start on."""
        self.bound = True

    def unbind(self) -> None:
        """The lifecycle is done: the next start leaves the slot empty, and nothing is refused."""
        self.bound = False
        self.draining = False

    @property
    def in_flight(self) -> int:
        return len(self._running)

    async def __call__(self, call: Call, call_next: CallNext) -> Any:
        if _inside_call.get():
            return await call_next(call)
        if self.draining:
            raise DependencyUnavailable(SHUTTING_DOWN, retry_after_ms=1000)
        scope = cancel_scope()  # anyio.CancelScope(), its class found once per loop
        self._running.add(scope)
        token = _inside_call.set(True)
        try:
            with scope:
                return await call_next(call)
        finally:
            _inside_call.reset(token)
            self._running.discard(scope)
            if not self._running and self._idle is not None:
                self._idle.set()
        # Reached only when cut_short() cancelled the call: answer it with a clear error.
        raise DependencyUnavailable(CUT_SHORT)

    async def wait_idle(self, seconds: float) -> bool:
        """Wait until no call is in flight, at most ``seconds``; True when none is."""
        with anyio.move_on_after(seconds):
            while self._running:
                self._idle = anyio.Event()
                await self._idle.wait()
        return not self._running

    def cut_short(self) -> int:
        """Cancel every call in flight (each is answered with an error); returns how many."""
        for scope in list(self._running):
            scope.cancel()
        return len(self._running)
