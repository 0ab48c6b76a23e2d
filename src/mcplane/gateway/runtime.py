"""What a running gateway adds around its upstreams: readiness, metrics, shared breakers, relays.

:func:`gateway_running` is entered by :meth:`UpstreamProvider.open` once the endpoints have had
their first connection attempt, and left before they close:

* **readiness**: one ``/ready`` check per upstream with ``required: true`` (the default),
  ``upstream:<name>``: ready while at least one of its endpoints is connected. A circuit that is
  open does not make the gateway unready: the breaker already answers those calls at once, an
  unready replica would get no traffic to probe the circuit closed, and with shared breakers
  every replica would leave the load balancer together. ``required: false`` leaves an upstream
  out of readiness (an optional dependency whose outage must not take the gateway down).
* **metrics**: ``mcplane_circuit_state{upstream,endpoint}`` on every breaker transition (local or
  adopted) and at each health check, ``mcplane_upstream_healthy{upstream}`` (1 when an endpoint
  can take calls) with it, ``mcplane_upstream_calls_total{upstream,endpoint,outcome}`` per attempt;
* **shared breakers** (:mod:`mcplane.gateway.shared`) when the plane has ``redis_url``;
* **relays** (:mod:`mcplane.gateway.relay`): list-changed notifications to gateway clients.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Callable, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskStatus

from mcplane.gateway.breaker import CircuitBreaker, State
from mcplane.gateway.breaker_store import BreakerStore
from mcplane.gateway.config import SharedStateConfig
from mcplane.gateway.endpoint import EndpointConnection
from mcplane.gateway.relay import ListChangedRelay
from mcplane.gateway.shared import BreakerSync, attach_all
from mcplane.transports.session_state import plane_session_state

if TYPE_CHECKING:
    from mcplane.app import Plane
    from mcplane.gateway.upstream import Upstream
    from mcplane.observability.metrics import Metrics

__all__ = ["STATE_VALUES", "GatewayRuntime", "gateway_running", "readiness_check"]

logger = logging.getLogger("mcplane.gateway")

STATE_VALUES: dict[State, int] = {"closed": 0, "half_open": 1, "open": 2}


def readiness_check(upstream: Upstream) -> Callable[[], Any]:
    async def check() -> tuple[bool, str]:
        if any(endpoint.connected for endpoint in upstream.endpoints):
            return True, "ok"
        return False, "not connected"

    return check


class _Gauges:
    """Keeps the circuit and health gauges of every endpoint current."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._owner: dict[int, Upstream] = {}

    def watch(self, upstream: Upstream) -> None:
        upstream.metrics = self.metrics
        for endpoint in upstream.endpoints:
            if id(endpoint.breaker) in self._owner:
                continue
            self._owner[id(endpoint.breaker)] = upstream
            endpoint.breaker.listeners.append(self._on_transition)
            endpoint.on_status = self._on_status
            self.refresh(upstream)

    def _on_transition(self, breaker: CircuitBreaker, state: State, local: bool) -> None:
        upstream = self._owner.get(id(breaker))
        if upstream is not None:
            self.refresh(upstream)

    def _on_status(self, endpoint: EndpointConnection) -> None:
        upstream = self._owner.get(id(endpoint.breaker))
        if upstream is not None:
            self.refresh(upstream)

    def refresh(self, upstream: Upstream) -> None:
        for endpoint in upstream.endpoints:
            self.metrics.set_circuit_state(upstream.name, endpoint.label, STATE_VALUES[endpoint.breaker.state])
        self.metrics.set_upstream_healthy(upstream.name, upstream.healthy())


class GatewayRuntime:
    """The hooks of one running gateway; :meth:`adopt` each upstream it serves (idempotent)."""

    def __init__(self, plane: Plane, sync: BreakerSync | None, relay: ListChangedRelay) -> None:
        self.plane = plane
        self.sync = sync
        self.relay = relay
        observability = plane.layers.observability
        metrics = observability.metrics if observability is not None else None
        self._gauges = _Gauges(metrics) if metrics is not None else None
        self._checks: dict[str, Upstream] = {}
        self._scope: anyio.CancelScope | None = None
        self._stopped = anyio.Event()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """The shared breakers' sync (start it in a task group; :meth:`stop` ends it)."""
        try:
            if self.sync is None:
                task_status.started()
                return
            with anyio.CancelScope() as self._scope:
                await self.sync.run(task_status=task_status)  # the first sync is bounded by the store timeout
        finally:
            self._stopped.set()

    async def stop(self) -> None:
        if self._scope is not None:
            self._scope.cancel()
            await self._stopped.wait()

    def adopt(self, upstreams: Iterable[Upstream]) -> None:
        """Relay, gauges, readiness and shared breakers for ``upstreams`` (also ones added later)."""
        checks = self.plane.layers.health_checks
        for upstream in upstreams:
            upstream.relay = self.relay
            if self._gauges is not None:
                self._gauges.watch(upstream)
            if self.sync is not None:
                attach_all(self.sync, upstream.endpoints, lambda e: _lease(e.config))
            if upstream.config.required:
                name = f"upstream:{upstream.name}"
                checks[name] = readiness_check(upstream)
                self._checks[name] = upstream

    def forget(self, upstreams: Iterable[Upstream]) -> None:
        """Undo :meth:`adopt` for upstreams the gateway no longer serves."""
        checks = self.plane.layers.health_checks
        for upstream in upstreams:
            upstream.relay = None
            upstream.metrics = None
            for endpoint in upstream.endpoints:
                if self.sync is not None:
                    self.sync.detach(endpoint.breaker)
            name = f"upstream:{upstream.name}"
            if self._checks.get(name) is upstream:
                del self._checks[name]
                checks.pop(name, None)


@asynccontextmanager
async def gateway_running(
    plane: Plane,
    upstreams: Iterable[Upstream],
    shared: SharedStateConfig | None = None,
    *,
    store: BreakerStore | None = None,
) -> AsyncGenerator[GatewayRuntime]:
    """Install readiness checks, gauges, the list-changed relay and (with a store or ``redis_url``)
    the shared breakers for ``upstreams`` (start :meth:`GatewayRuntime.run` in a task group); undo it all on leaving."""
    relay = ListChangedRelay(plane)
    plane.sdk.middleware.append(relay.middleware)
    plane.fast.transparent(relay.middleware)  # it only looks at initialize and list messages
    plane.fast.legacy_caller = relay.hot_path_caller
    restorers = plane_session_state(plane).restorers
    restorers.append(relay.adopted)  # sessions adopted here are known as if they initialized here
    runtime = GatewayRuntime(plane, None, relay)
    upstreams = list(upstreams)
    try:
        async with AsyncExitStack() as stack:
            runtime.sync = await _shared_store(plane, shared or SharedStateConfig(), store, stack)
            runtime.adopt(upstreams)
            try:
                yield runtime
            finally:
                await runtime.stop()
    finally:
        runtime.forget(list(runtime._checks.values()) + upstreams)  # pyright: ignore[reportPrivateUsage]
        if relay.middleware in plane.sdk.middleware:
            plane.sdk.middleware.remove(relay.middleware)
        plane.fast.opaque(relay.middleware)
        if plane.fast.legacy_caller == relay.hot_path_caller:
            plane.fast.legacy_caller = None
        if relay.adopted in restorers:
            restorers.remove(relay.adopted)


async def _shared_store(
    plane: Plane, shared: SharedStateConfig, store: BreakerStore | None, stack: AsyncExitStack
) -> BreakerSync | None:
    if store is None:
        if not shared.enabled or plane.config.redis_url is None:
            return None
        from mcplane.backends.redis import RedisOptions, connect_redis
        from mcplane.backends.registry import BREAKER, Opening

        options = RedisOptions(**plane.config.redis.model_dump())
        client = connect_redis(plane.config.redis_url.get(), options=options)
        stack.push_async_callback(client.aclose)
        store = BREAKER.build("redis", Opening(plane.config, lambda: client))
    return BreakerSync(store, sync_interval=shared.sync_interval)


def _lease(config: Any) -> float:
    """How long a half-open probe may hold its lease: the longest one attempt may take."""
    return float(config.retries.attempt_timeout or config.timeout or max(config.breaker.cool_down, 30.0))
