"""Circuit-breaker state shared by gateway replicas: local state, published transitions, periodic sync.

With ``redis_url`` in the plane config (and ``shared_state.enabled``, the default), every
network endpoint's breaker (:class:`~mcplane.gateway.breaker.CircuitBreaker`) is attached to one
:class:`BreakerSync` per gateway. The hot path stays local:

* a call on a **closed** circuit costs no round trip to Redis (its verdict updates the local
  counters only); the local state answers ``can_take``/``acquire`` as before;
* a **transition** this replica makes (it opened the circuit, its probe closed or re-opened it)
  is applied locally at once and written to the store by a background task: one Lua script
  that sets the record and publishes the change; every replica listening adopts it, so replica B
  refuses with ``circuit_open`` as soon as the message arrives, without failures of its own;
* the **half-open probe** is claimed in the store (one script, only after a cool-down), so one
  probe goes out across all replicas; the others refuse until its verdict or its lease ends;
* every ``sync_interval`` one pipelined read of every attached endpoint catches up on anything
  pub/sub lost (a reconnect, a replica that just started).

When the store fails, the breakers keep working on their local state (logged once); the next
sync that succeeds resumes sharing. A call never fails because the store is down.

Endpoint identity across replicas is ``(upstream, endpoint index, endpoint.describe())``. stdio
endpoints are not shared: each replica spawns its own child process, whose health says nothing
about another replica's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from mcplane.backends.keys import tag_for
from mcplane.gateway.breaker import CircuitBreaker, State
from mcplane.gateway.breaker_store import BreakerRecord, BreakerStore

__all__ = ["BreakerSync", "SharedHandle", "endpoint_key"]

logger = logging.getLogger("mcplane.gateway")

STORE_TIMEOUT = 2.0
"""How long one store operation may take before this replica falls back to its local state."""


def endpoint_key(upstream: str, index: int, described: str) -> str:
    """The store key of one endpoint: the same on every replica with the same config."""
    return tag_for("breaker", upstream, str(index), described)


@dataclass
class SharedHandle:
    """What an attached breaker knows of its store: its key, its probe lease, the sync."""

    sync: BreakerSync
    key: str
    lease: float
    token: str = ""

    async def claim(self, breaker: CircuitBreaker, lease: float | None) -> bool:
        return await self.sync.claim(breaker, self, lease or self.lease)

    def released(self, breaker: CircuitBreaker) -> None:
        self.sync.push(breaker, "release")


class BreakerSync:
    """Attaches breakers to a :class:`~mcplane.gateway.breaker_store.BreakerStore`; run :meth:`run` in a task."""

    def __init__(self, store: BreakerStore, *, sync_interval: float = 5.0) -> None:
        self.store = store
        self.sync_interval = sync_interval
        self.breakers: dict[str, CircuitBreaker] = {}
        self.down = False
        """The store failed last time: breakers run on local state until a sync succeeds."""
        self.synced = anyio.Event()
        """Set after the first full read (tests wait on it)."""
        self._send: MemoryObjectSendStream[tuple[CircuitBreaker, str]] | None = None

    def attach(self, breaker: CircuitBreaker, key: str, *, lease: float) -> None:
        """Share ``breaker``'s state under ``key``; ``lease`` bounds how long its probe may take."""
        if breaker.shared is not None:
            return
        breaker.shared = SharedHandle(self, key, lease)
        breaker.listeners.append(self._on_change)
        self.breakers[key] = breaker

    def detach(self, breaker: CircuitBreaker) -> None:
        if breaker.shared is not None:
            self.breakers.pop(breaker.shared.key, None)
            breaker.listeners.remove(self._on_change)
            breaker.shared = None

    # ----------------------------------------------------------------- the call path
    def _on_change(self, breaker: CircuitBreaker, state: State, local: bool) -> None:
        if local and state != "half_open":  # a probe claim was written by claim() itself
            self.push(breaker, state)

    def push(self, breaker: CircuitBreaker, what: str) -> None:
        """Queue a local transition for the store (never waits; dropped when the store is down)."""
        if self.down or self._send is None:
            return
        try:
            self._send.send_nowait((breaker, what))
        except anyio.WouldBlock:
            logger.warning("breaker store: too many transitions queued; dropping one")

    async def claim(self, breaker: CircuitBreaker, handle: SharedHandle, lease: float) -> bool:
        """The half-open probe, across replicas: one script; local on a store failure."""
        if self.down:
            return breaker.acquire()
        try:
            with anyio.fail_after(STORE_TIMEOUT):
                record = await self.store.claim(handle.key, lease)
        except Exception as exc:
            self._failed(exc)
            return breaker.acquire()
        if record.granted:
            handle.token = record.token
            breaker.generation = max(breaker.generation, record.generation)
            breaker.begin_probe()
            return True
        breaker.adopt(record.state, record.retry_after, record.generation)
        return breaker.acquire() if record.state == "closed" else False

    # ----------------------------------------------------------------- background
    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Sync once, then push transitions, listen to the other replicas and re-sync, until cancelled."""
        send, receive = anyio.create_memory_object_stream[tuple[CircuitBreaker, str]](4096)
        with send, receive:
            self._send = send
            try:
                await self.sync()
                task_status.started()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._pusher, receive)
                    tg.start_soon(self._listener)
                    while True:
                        await anyio.sleep(self.sync_interval)
                        await self.sync()
            finally:
                self._send = None

    async def sync(self) -> None:
        """Read every attached endpoint's record and adopt the newer ones."""
        breakers = dict(self.breakers)
        try:
            with anyio.fail_after(STORE_TIMEOUT):
                records = await self.store.read(list(breakers))
        except Exception as exc:
            self._failed(exc)
            return
        self._recovered()
        for record in records:
            breaker = breakers.get(record.key)
            if breaker is not None:
                self.apply(breaker, record, from_sync=True)
        self.synced.set()

    def apply(self, breaker: CircuitBreaker, record: BreakerRecord, *, from_sync: bool = False) -> None:
        """Adopt ``record`` when it is newer than what the breaker knows."""
        if record.generation > breaker.generation:
            breaker.adopt(record.state, record.retry_after, record.generation)
        elif from_sync and record.generation == 0 and breaker.generation > 0 and breaker.state != "closed":
            breaker.adopt("closed", 0.0, 0)  # the shared record expired: nobody holds it open any more

    async def _pusher(self, receive: MemoryObjectReceiveStream[tuple[CircuitBreaker, str]]) -> None:
        async for breaker, what in receive:
            handle = breaker.shared
            if handle is None or self.down:
                continue
            try:
                with anyio.fail_after(STORE_TIMEOUT):
                    record = await self._write(breaker, handle, what)
            except Exception as exc:
                self._failed(exc)
                continue
            if record is not None:
                breaker.generation = max(breaker.generation, record.generation)

    async def _write(self, breaker: CircuitBreaker, handle: SharedHandle, what: str) -> BreakerRecord | None:
        if what == "open":
            return await self.store.trip(handle.key, breaker.config.cool_down)
        if what == "closed":
            return await self.store.close(handle.key)
        token, handle.token = handle.token, ""
        await self.store.release(handle.key, token)
        return None

    async def _listener(self) -> None:
        delay = 0.1
        while True:
            try:
                async with self.store.listen() as events:
                    delay = 0.1
                    await self.sync()  # what was published while nobody listened
                    async for record in events:
                        breaker = self.breakers.get(record.key)
                        if breaker is not None:
                            self.apply(breaker, record)
            except Exception as exc:
                self._failed(exc)
            await anyio.sleep(delay)
            delay = min(delay * 2, self.sync_interval)

    def _failed(self, exc: BaseException) -> None:
        if not self.down:
            logger.warning(
                "breaker store unavailable (%s): breakers use local state until it answers", type(exc).__name__
            )
        self.down = True

    def _recovered(self) -> None:
        if self.down:
            logger.info("breaker store answers again: breaker state is shared again")
        self.down = False

    def keys(self) -> Sequence[str]:
        return list(self.breakers)


def attach_all(sync: BreakerSync, endpoints: Sequence[Any], lease_of: Callable[[Any], float]) -> None:
    """Attach every network endpoint's breaker (stdio ones stay local)."""
    for endpoint in endpoints:
        if endpoint.endpoint.kind == "stdio" or endpoint.breaker.shared is not None:
            continue
        key = endpoint_key(endpoint.upstream, endpoint.index, endpoint.endpoint.describe())
        sync.attach(endpoint.breaker, key, lease=lease_of(endpoint))
