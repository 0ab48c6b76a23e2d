"""The in-memory event store that lets 2025-11-25 clients resume an SSE stream."""

from __future__ import annotations

from mcp.server.streamable_http import EventMessage
from mcp_types import JSONRPCNotification, JSONRPCRequest

from mcplane.transports.events import MemoryEventStore


def _note(n: int) -> JSONRPCNotification:
    return JSONRPCNotification(jsonrpc="2.0", method="notifications/progress", params={"n": n})


async def _replay(store: MemoryEventStore, after: str) -> tuple[str | None, list[tuple[str, object]]]:
    seen: list[tuple[str, object]] = []

    async def collect(event: EventMessage) -> None:
        seen.append((event.event_id or "", event.message))

    stream = await store.replay_events_after(after, collect)
    return stream, seen


async def test_replays_only_later_events_of_the_same_stream() -> None:
    store = MemoryEventStore()
    first = await store.store_event("a", _note(1))
    await store.store_event("b", _note(2))
    second = await store.store_event("a", _note(3))
    await store.store_event("a", None)  # a priming event carries no message and is never replayed
    third = await store.store_event("a", _note(4))

    stream, seen = await _replay(store, first)
    assert stream == "a"
    assert seen == [(second, _note(3)), (third, _note(4))]


async def test_unknown_or_malformed_ids_replay_nothing() -> None:
    store = MemoryEventStore()
    await store.store_event("a", JSONRPCRequest(jsonrpc="2.0", id=1, method="ping"))
    assert await _replay(store, "999") == (None, [])
    assert await _replay(store, "not-a-number") == (None, [])


async def test_keeps_only_the_newest_events() -> None:
    store = MemoryEventStore(max_events=2)
    oldest = await store.store_event("a", _note(1))
    middle = await store.store_event("a", _note(2))
    newest = await store.store_event("a", _note(3))
    assert await _replay(store, oldest) == (None, [])
    assert await _replay(store, middle) == ("a", [(newest, _note(3))])


async def test_a_session_replays_only_its_own_events() -> None:
    store = MemoryEventStore()
    alice, bob = store.for_session("session-a"), store.for_session("session-b")
    a_first = await alice.store_event("_GET_stream", _note(1))
    b_first = await bob.store_event("_GET_stream", _note(2))  # the SDK names every GET stream alike
    a_second = await alice.store_event("_GET_stream", _note(3))
    b_second = await bob.store_event("_GET_stream", _note(4))

    seen: list[tuple[str, object]] = []

    async def collect(event: EventMessage) -> None:
        seen.append((event.event_id or "", event.message))

    assert await alice.replay_events_after(a_first, collect) == "_GET_stream"
    assert seen == [(a_second, _note(3))]
    seen.clear()
    assert await bob.replay_events_after(b_first, collect) == "_GET_stream"
    assert seen == [(b_second, _note(4))]
    seen.clear()
    # Another session's event id (a counter: easy to guess) resumes nothing.
    assert await bob.replay_events_after(a_first, collect) is None
    assert await store.replay_events_after(a_first, collect) is None
    assert seen == []
