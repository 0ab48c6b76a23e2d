"""Session state records (:mod:`mcplane.transports.session_state`): bounded, expiring, restored."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from mcplane.transports import session_state as module
from mcplane.transports.sealing import Revocations, SessionClaims, SessionSealer
from mcplane.transports.session_state import MAX_BYTES, MAX_KEYS, SessionState, session_state


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _state(clock: Clock) -> tuple[SessionState, SessionSealer]:
    sealer = SessionSealer([secrets.token_bytes(32)], ttl=600, clock=clock)
    state = SessionState()
    state.bind(sealer, Revocations(sealer))
    return state, sealer


def _session(sealer: SessionSealer) -> tuple[str, SessionClaims]:
    claims = sealer.opening_claims(None, None)
    return sealer.seal(claims), claims


async def test_a_record_is_written_read_and_removed_by_key() -> None:
    state, sealer = _state(Clock())
    session, claims = _session(sealer)
    assert await state.write(session, "a", 1)
    assert await state.write(session, "b", ["x", "y"])
    assert await state.read(claims) == {"a": 1, "b": ["x", "y"]}
    assert await state.write(session, "a", None)
    assert state.local(session) == {"b": ["x", "y"]}
    await state.forget(claims)
    assert await state.read(claims) == {}


async def test_only_sessions_of_this_plane_have_records() -> None:
    state, _ = _state(Clock())
    foreign, _ = _session(SessionSealer([secrets.token_bytes(32)], ttl=600))
    assert not await state.write(foreign, "a", 1)
    assert not await state.write(None, "a", 1)
    assert not await SessionState().write(foreign, "a", 1)  # not bound to a manager yet


async def test_a_record_is_bounded_in_keys_and_bytes() -> None:
    state, sealer = _state(Clock())
    session, _ = _session(sealer)
    for key in range(MAX_KEYS):
        assert await state.write(session, str(key), key)
    assert not await state.write(session, "one-more", 1)
    assert await state.write(session, "0", "replaced")  # an existing key may change
    other, _ = _session(sealer)
    assert not await state.write(other, "big", "x" * MAX_BYTES)
    assert state.local(other) == {}


async def test_a_record_expires_with_its_session_id() -> None:
    clock = Clock()
    state, sealer = _state(clock)
    session, claims = _session(sealer)
    assert await state.write(session, "a", 1)
    clock.now += 599
    assert await state.read(claims) == {"a": 1}
    clock.now += 2
    assert await state.read(claims) == {}


async def test_records_are_bounded_in_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(module, "MAX_RECORDS", 3)
    state, sealer = _state(Clock())
    sessions = [_session(sealer) for _ in range(4)]
    for session, _ in sessions:
        assert await state.write(session, "a", 1)
    assert [await state.read(claims) for _, claims in sessions] == [{}, {"a": 1}, {"a": 1}, {"a": 1}]


def test_restorers_get_the_record_and_their_awaitables_are_handed_back() -> None:
    state = SessionState()
    seen: list[tuple[Any, dict[str, Any]]] = []

    async def later() -> None:
        return None

    def restore(connection: Any, record: Any) -> Any:
        seen.append((connection, dict(record)))
        return later()

    def broken(connection: Any, record: Any) -> None:
        raise RuntimeError("boom")

    state.restorers.extend([broken, restore])
    connection: Any = "conn"
    pending = state.restore(connection, {"a": 1})
    assert seen == [("conn", {"a": 1})]
    assert len(pending) == 1
    pending[0].close()  # pyright: ignore[reportAttributeAccessIssue]


def test_one_state_per_served_server() -> None:
    class Server:
        pass

    one, two = Server(), Server()
    assert session_state(one) is session_state(one)
    assert session_state(one) is not session_state(two)
