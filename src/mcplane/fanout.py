"""Server→client messages that reach a client whichever replica holds its stream.

A client's stream lives on one replica: the 2025-11-25 GET stream of a session, a 2026-07-28
``subscriptions/listen`` response. What produces a message for it may run on another. With
Redis configured (``redis_url``), every replica of a plane publishes such messages on one Redis
pub/sub channel, ``mcplane:fanout:<server name>``, and delivers the ones it receives to the
streams it holds. Each message names its kind:

``e``  an event for ``subscriptions/listen`` streams (list changed, resource updated): every
       replica hands it to its local listeners, which filter per stream as the SDK does;
``b``  a plane-wide notification for every 2025-11-25 session (``Plane.notify_list_changed``):
       the replica holding a session's GET stream writes it there;
``s``  a notification for one session, produced where its GET stream is not (a tool calling
       ``ctx.session.send_log_message(...)`` or ``send_tool_list_changed()``);
``r``  a session was ended (``DELETE``): replicas holding it close their copy.

Delivery is at most once and advisory, like the notifications themselves: a message published
while a replica is reconnecting to Redis is lost to it (revocations also live in Redis keys,
checked when a replica adopts a session). Publishing never blocks or fails the caller: messages
wait in a bounded outbox for the publisher task. A replica hands its own messages to its own
streams directly and skips its echo. Without Redis all of this stays within the process.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal, cast

import anyio
import orjson
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.server.subscriptions import (
    InMemorySubscriptionBus,
    PromptsListChanged,
    ResourcesListChanged,
    ResourceUpdated,
    ServerEvent,
    ToolsListChanged,
)
from mcp.shared.subscriptions import event_from_wire, event_to_notification

from mcplane.sdk_adapter.mcpserver import subscription_bus

if TYPE_CHECKING:
    from mcplane.app import Plane
    from mcplane.transports.sessions import SessionManager

__all__ = ["Fanout", "ListChanged", "PlaneBus", "event_message", "list_changed_event", "replicate"]

logger = logging.getLogger("mcplane.fanout")

Handler = Callable[[dict[str, Any]], Awaitable[None]]
ListChanged = Literal["tools", "prompts", "resources"]
OUTBOX_SIZE = 10_000
_POLL_SECONDS = 1.0


def event_message(event: ServerEvent) -> dict[str, Any]:
    """The JSON-RPC notification an event is on the wire (no subscription id)."""
    notification = event_to_notification(event, {})
    dumped = notification.model_dump(by_alias=True, mode="json", exclude_none=True)
    params = dumped.get("params")
    if isinstance(params, dict) and params.get("_meta") == {}:
        params.pop("_meta")
        if not params:
            dumped.pop("params")
    return {"jsonrpc": "2.0", **dumped}


def list_changed_event(kind: ListChanged) -> ServerEvent:
    return {"tools": ToolsListChanged, "prompts": PromptsListChanged, "resources": ResourcesListChanged}[kind]()


class Fanout:
    """One Redis pub/sub channel shared by a plane's replicas; ``publish`` is fire-and-forget."""

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.origin = secrets.token_hex(8)
        """This replica's mark on what it publishes, so it can skip its own echo."""
        self._handlers: dict[str, Handler] = {}
        self._send: MemoryObjectSendStream[bytes] | None = None
        self.running = False
        self.subscribed = anyio.Event()
        """Set while the subscription to the channel is up (readiness reads it)."""
        self.dropped = 0

    def on(self, kind: str, handler: Handler) -> None:
        self._handlers[kind] = handler

    def publish(self, kind: str, body: dict[str, Any]) -> None:
        if self._send is None:
            return
        try:
            self._send.send_nowait(orjson.dumps({"k": kind, "o": self.origin, **body}))
        except anyio.WouldBlock:
            self.dropped += 1
            logger.warning("fan-out outbox full; a %s message was dropped", kind)

    async def run(self, client: Any, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Publish the outbox and deliver the channel until cancelled; reconnects by itself."""
        send, outbox = anyio.create_memory_object_stream[bytes](OUTBOX_SIZE)
        self.running = True
        try:
            with send, outbox:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._publisher, client, outbox)
                    await tg.start(self._subscriber, client)
                    self._send = send
                    task_status.started()
        finally:
            self.running = False
            self._send = None

    async def _publisher(self, client: Any, outbox: MemoryObjectReceiveStream[bytes]) -> None:
        async for payload in outbox:
            try:
                await client.publish(self.channel, payload)
            except Exception as exc:  # Redis down: the message is lost, the caller never waits
                self.dropped += 1
                logger.warning("fan-out publish failed: %s", type(exc).__name__)

    async def _subscriber(self, client: Any, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        backoff = 0.05
        started = False
        while True:
            pubsub = client.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                self.subscribed.set()
                backoff = 0.05
                if not started:
                    started = True
                    task_status.started()
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=_POLL_SECONDS)
                    if message is not None and message.get("type") == "message":
                        await self._dispatch(message["data"])
            except Exception as exc:  # connection lost: resubscribe after a short backoff
                if self.subscribed.is_set():
                    self.subscribed = anyio.Event()
                logger.warning("fan-out subscription lost: %s; resubscribing", type(exc).__name__)
                if not started:
                    started = True
                    task_status.started()  # start serving; readiness reports the subscription down
            finally:
                with anyio.CancelScope(shield=True), anyio.move_on_after(2.0):
                    await pubsub.aclose()
            await anyio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def _dispatch(self, data: bytes) -> None:
        try:
            body = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        if not isinstance(body, dict) or body.get("o") == self.origin:
            return
        handler = self._handlers.get(str(body.get("k")))
        if handler is None:
            return
        try:
            await handler(body)
        except Exception:  # one bad message must not end the subscription
            logger.exception("fan-out handler for %r failed", body.get("k"))


class PlaneBus:
    """The SDK ``SubscriptionBus`` of a plane: local listeners, plus every replica's through a :class:`Fanout`.

    ``announce`` also reaches 2025-11-25 sessions (their GET streams), on every replica.
    """

    def __init__(self) -> None:
        self._local = InMemorySubscriptionBus()
        self.fanout: Fanout | None = None
        self._sinks: list[Callable[[dict[str, Any]], Awaitable[Any]]] = []
        """Each writes a notification to 2025-11-25 sessions of this replica: the HTTP tier's GET
        streams (one sink for all), and each stdio or WebSocket connection (a sink apiece)."""

    def subscribe(self, listener: Callable[[ServerEvent], None]) -> Callable[[], None]:
        return self._local.subscribe(listener)

    async def publish(self, event: ServerEvent) -> None:
        """Deliver to ``subscriptions/listen`` streams here and on every other replica."""
        await self._local.publish(event)
        if self.fanout is not None:
            self.fanout.publish("e", {"m": event_message(event)})

    async def announce(self, event: ServerEvent) -> None:
        """``publish``, and for a list change, notify every 2025-11-25 session too."""
        await self.publish(event)
        if isinstance(event, ResourceUpdated):
            return  # 2025-11-25 clients get it only for resources they subscribed to
        message = event_message(event)
        if self.fanout is not None:
            self.fanout.publish("b", {"m": message})
        await self._to_sessions(message)

    def attach(
        self, fanout: Fanout | None, legacy: Callable[[dict[str, Any]], Awaitable[Any]] | None
    ) -> Callable[[], None]:
        """Connect to a running fan-out and the HTTP tier's sessions; returns the detach callable."""
        self.fanout = fanout
        remove = self.add_sink(legacy) if legacy is not None else None
        if fanout is not None:
            fanout.on("e", self._remote_event)
            fanout.on("b", self._remote_broadcast)

        def detach() -> None:
            self.fanout = None
            if remove is not None:
                remove()

        return detach

    def add_sink(self, sink: Callable[[dict[str, Any]], Awaitable[Any]]) -> Callable[[], None]:
        """Send list changes to ``sink`` too (a connection's 2025-11-25 session); returns its remover."""
        self._sinks.append(sink)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._sinks.remove(sink)

        return remove

    async def _to_sessions(self, message: dict[str, Any]) -> None:
        for sink in list(self._sinks):
            try:
                await sink(message)
            except Exception as exc:  # one gone connection must not keep the change from the others
                logger.debug("list change not delivered to a session: %s", type(exc).__name__)

    async def _remote_event(self, body: dict[str, Any]) -> None:
        message = body.get("m")
        if isinstance(message, dict):
            event = event_from_wire(str(message.get("method")), message.get("params"))
            if event is not None:
                await self._local.publish(event)

    async def _remote_broadcast(self, body: dict[str, Any]) -> None:
        message = body.get("m")
        if isinstance(message, dict):
            await self._to_sessions(cast("dict[str, Any]", message))


@contextlib.asynccontextmanager
async def replicate(plane: Plane, manager: SessionManager) -> AsyncGenerator[Fanout | None]:
    """Connect a running plane's sessions and bus to its other replicas (with ``redis_url``).

    Yields the running :class:`Fanout`, or ``None`` without Redis: then list changes still
    reach this process's 2025-11-25 sessions.
    """
    bus = subscription_bus(plane.sdk)
    url = plane.config.redis_url
    if url is None:
        detach = bus.attach(None, manager.broadcast) if isinstance(bus, PlaneBus) else None
        try:
            yield None
        finally:
            if detach is not None:
                detach()
        return
    from mcplane.backends.redis import connect_redis

    client = connect_redis(url.get())
    fanout = Fanout(f"mcplane:fanout:{plane.name}")
    fanout.on("s", manager.deliver_relayed)
    fanout.on("r", manager.ended_elsewhere)
    manager.fanout = fanout
    manager.revocations.redis = client
    detach = bus.attach(fanout, manager.broadcast) if isinstance(bus, PlaneBus) else None
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(fanout.run, client)
            try:
                yield fanout
            finally:
                tg.cancel_scope.cancel()
    finally:
        manager.fanout = None
        manager.revocations.redis = None
        if detach is not None:
            detach()
        with anyio.CancelScope(shield=True):
            await client.aclose()
