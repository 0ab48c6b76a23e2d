"""A bounded in-memory event store so 2025-11-25 clients can resume an SSE stream.

One store serves a whole HTTP app, but every session sees only its own events: the SDK names a
session's streams with ids that repeat across sessions (``_GET_stream`` for every standalone
GET stream, JSON-RPC request ids for the others) and event ids here are a counter anyone can
guess, so each session's transport gets a :meth:`MemoryEventStore.for_session` view that stores
its events under its own key and replays nothing another session stored, whatever
``Last-Event-ID`` it presents.
"""

from __future__ import annotations

from collections import OrderedDict
from itertools import count

from mcp.server.streamable_http import EventCallback, EventId, EventMessage, EventStore, StreamId
from mcp_types import JSONRPCMessage

__all__ = ["MemoryEventStore", "SessionEvents"]


class MemoryEventStore(EventStore):
    """Keeps the newest ``max_events`` events of all sessions; older ones can no longer be replayed.

    Used directly it is one unnamed owner's store; sessions use :meth:`for_session`.
    """

    def __init__(self, max_events: int = 10_000) -> None:
        self.max_events = max_events
        self._ids = count(1)
        self._events: OrderedDict[int, tuple[str, StreamId, JSONRPCMessage | None]] = OrderedDict()

    def for_session(self, owner: str) -> SessionEvents:
        """The store as the session ``owner`` sees it (its own events only)."""
        return SessionEvents(self, owner)

    async def store_event(self, stream_id: StreamId, message: JSONRPCMessage | None) -> EventId:
        return self.store(stream_id, message, owner="")

    async def replay_events_after(self, last_event_id: EventId, send_callback: EventCallback) -> StreamId | None:
        return await self.replay(last_event_id, send_callback, owner="")

    def store(self, stream_id: StreamId, message: JSONRPCMessage | None, *, owner: str) -> EventId:
        event_id = next(self._ids)
        self._events[event_id] = (owner, stream_id, message)
        while len(self._events) > self.max_events:
            self._events.popitem(last=False)
        return str(event_id)

    async def replay(self, last_event_id: EventId, send_callback: EventCallback, *, owner: str) -> StreamId | None:
        try:
            last = int(last_event_id)
        except ValueError:
            return None
        entry = self._events.get(last)
        if entry is None or entry[0] != owner:
            return None  # unknown, too old, or another session's: nothing to resume
        stream_id = entry[1]
        for event_id, (who, sid, message) in list(self._events.items()):
            if event_id > last and who == owner and sid == stream_id and message is not None:
                await send_callback(EventMessage(message, str(event_id)))
        return stream_id


class SessionEvents(EventStore):
    """One session's view of a :class:`MemoryEventStore`."""

    __slots__ = ("_owner", "_store")

    def __init__(self, store: MemoryEventStore, owner: str) -> None:
        self._store = store
        self._owner = owner

    async def store_event(self, stream_id: StreamId, message: JSONRPCMessage | None) -> EventId:
        return self._store.store(stream_id, message, owner=self._owner)

    async def replay_events_after(self, last_event_id: EventId, send_callback: EventCallback) -> StreamId | None:
        return await self._store.replay(last_event_id, send_callback, owner=self._owner)
