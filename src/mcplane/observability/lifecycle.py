"""A served plane's lifecycle: start, ready, draining, stopped; and the gate that drains calls.

On SIGTERM or SIGINT a served plane drains instead of dying:

1. at once: ``/ready`` answers 503 (draining), ``mcplane_ready`` drops to 0, and new calls are
   refused with ``dependency_unavailable`` (retryable), whatever transport brings them: the HTTP
   tier refuses new requests, new WebSocket connections are closed with 1013, and calls on open
   connections (WebSocket, stdio) are refused by the :class:`DrainGate`;
2. calls in flight may finish within ``server.shutdown_grace`` (30 s by default); those still
   running then are cancelled and answered with ``dependency_unavailable`` ("the server shut down
   before the call finished");
3. for :data:`LINGER_SECONDS` more, requests other than calls are still answered (a client's
   follow-up to the answer it just got); then the transports close (answers already produced are
   written first), the plane's lifespan closes (audit records and spans are flushed) and the
   process exits 0.

A second signal skips the rest of the grace period: calls still running are cut short at once.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

import anyio

from mcplane.errors import ConfigError
from mcplane.middleware.drain import DrainGate
from mcplane.observability.logs import lifecycle_event

if TYPE_CHECKING:
    from mcplane.app import Plane

__all__ = ["CUT_SHORT_WAIT", "LINGER_SECONDS", "DrainGate", "Lifecycle"]

CUT_SHORT_WAIT = 5.0
"""Seconds the calls cut short at the end of the grace period get to send their error answers."""
LINGER_SECONDS = 0.25
"""After the last call finishes, how long the server still answers other requests before closing:
a client's follow-up to the answer it just got (the SDK's client lists tools to check a result)."""


class Lifecycle:
    """One served plane's lifecycle: binds the drain gate, logs each step, keeps ``mcplane_ready`` current."""

    def __init__(self, plane: Plane, transport: str, *, grace: float | None = None) -> None:
        self.plane = plane
        self.transport = transport
        self.grace = plane.config.server.shutdown_grace if grace is None else grace
        self.gate: DrainGate | None = None
        self._forced = anyio.Event()
        self._drain_started: float | None = None

    @property
    def draining(self) -> bool:
        return self._drain_started is not None

    def _fields(self, **more: Any) -> dict[str, Any]:
        return {"transport": self.transport, "pid": os.getpid(), **more}

    def start(self, **fields: Any) -> None:
        from mcplane._version import __version__

        lifecycle_event("start", **self._fields(server=self.plane.name, version=__version__, **fields))

    def install(self) -> DrainGate:
        """Bind the plane's drain gate (until :meth:`uninstall`); the ``drain`` slot holds it from the start on.

        Call it before the plane starts: the pipeline is built, with the gate in its slot, when
        the plane starts.
        """
        if self.plane.started:
            raise ConfigError("install the lifecycle before the plane starts")
        self.gate = self.plane.drain
        self.gate.bind()
        return self.gate

    def uninstall(self) -> None:
        if self.gate is not None:
            self.gate.unbind()

    def ready(self, **fields: Any) -> None:
        """The plane is serving: bind observability to it, raise ``mcplane_ready``, log ``ready``."""
        obs = self.plane.layers.observability
        if obs is not None:
            obs.bind(self.plane)
            obs.set_ready(True)
        lifecycle_event("ready", **self._fields(**fields))

    def begin_drain(self, signal_name: str | None = None) -> None:
        """Refuse new calls from now on (the transports check :attr:`draining` too)."""
        if self._drain_started is not None:
            return
        self._drain_started = time.monotonic()
        if self.gate is not None:
            self.gate.draining = True
        obs = self.plane.layers.observability
        if obs is not None:
            obs.set_ready(False)
        in_flight = self.gate.in_flight if self.gate is not None else 0
        lifecycle_event("draining", **self._fields(signal=signal_name, in_flight=in_flight, grace_s=self.grace))

    def force(self) -> None:
        """A second signal: stop waiting for calls in flight."""
        self._forced.set()

    async def drain(self) -> None:
        """Wait for calls in flight up to the grace period (or a second signal); cut short the rest."""
        self.begin_drain()
        gate = self.gate
        if gate is None:
            return
        async with anyio.create_task_group() as tg:

            async def on_force() -> None:
                await self._forced.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(on_force)
            await gate.wait_idle(self.grace)
            tg.cancel_scope.cancel()
        if gate.in_flight:
            count = gate.cut_short()
            lifecycle_event("cut_short", **self._fields(calls=count, grace_s=self.grace))
            await gate.wait_idle(CUT_SHORT_WAIT)
        if not self._forced.is_set():
            with anyio.move_on_after(LINGER_SECONDS):
                await self._forced.wait()

    def stopped(self, **fields: Any) -> None:
        obs = self.plane.layers.observability
        if obs is not None:
            obs.set_ready(False)
        took = None if self._drain_started is None else round(time.monotonic() - self._drain_started, 3)
        lifecycle_event("stopped", **self._fields(drain_s=took, **fields))
