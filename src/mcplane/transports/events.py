"""A bounded in-memory event store so 2025-11-25 clients can resume an SSE stream."""

from __future__ import annotations

from collections import OrderedDict
from itertools import count

from mcp.server.streamable_http import EventCallback, EventId, EventMessage, EventStore, StreamId
from mcp_types import JSONRPCMessage

__all__ = ["MemoryEventStore"]


class MemoryEventStore(EventStore):
    """Keeps the newest ``max_events`` events; older ones can no longer be replayed."""

    def __init__(self, max_events: int = 10_000) -> None:
        self.max_events = max_events
        self._ids = count(1)
        self._events: OrderedDict[int, tuple[StreamId, JSONRPCMessage | None]] = OrderedDict()

    async def store_event(self, stream_id: StreamId, message: JSONRPCMessage | None) -> EventId:
        event_id = next(self._ids)
        self._events[event_id] = (stream_id, message)
        while len(self._events) > self.max_events:
            self._events.popitem(last=False)
        return str(event_id)

    async def replay_events_after(self, last_event_id: EventId, send_callback: EventCallback) -> StreamId | None:
        try:
            last = int(last_event_id)
        except ValueError:
            return None
        entry = self._events.get(last)
        if entry is None:
            return None
        stream_id = entry[0]
        for event_id, (sid, message) in list(self._events.items()):
            if event_id > last and sid == stream_id and message is not None:
                await send_callback(EventMessage(message, str(event_id)))
        return stream_id
