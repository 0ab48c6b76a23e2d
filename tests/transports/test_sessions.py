"""Sealed session ids, adoption, revocation and the fan-out channel (transports.sessions, fanout)."""

from __future__ import annotations

import gc
import json
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from mcp.server.auth.middleware.bearer_auth import AuthorizationContext
from mcp.server.request_state import AESGCMRequestStateCodec, InvalidRequestState
from mcp.server.subscriptions import ResourceUpdated, ToolsListChanged
from mcp_types.version import LATEST_HANDSHAKE_VERSION

from mcplane import Plane
from mcplane.backends.redis import connect_redis
from mcplane.config import PlaneConfig, load_config
from mcplane.errors import ConfigError
from mcplane.fanout import Fanout, PlaneBus, event_message
from mcplane.transports.sealing import REQUEST_STATE_PURPOSE, Revocations, SessionClaims, SessionSealer, derive_key
from mcplane.transports.sessions import SessionManager
from tests.backends.harness import redis_answers
from tests.conftest import free_port

REDIS_URL = os.environ.get("MCPLANE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
OLD, NEW = secrets.token_bytes(32), secrets.token_bytes(32)
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {"elicitation": {}},
        "clientInfo": {"name": "inspector", "version": "1.2.3"},
    },
}


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _body(message: Any = INITIALIZE) -> bytes:
    return json.dumps(message).encode()


# ------------------------------------------------------------------------- sealing
def test_an_id_carries_the_handshake_and_round_trips() -> None:
    sealer = SessionSealer([OLD], ttl=60)
    owner = AuthorizationContext(client_id="app", issuer="https://idp", subject="alice")
    claims = sealer.opening_claims(_body(), owner)
    session_id = sealer.seal(claims)
    assert session_id.isascii()
    assert all(0x21 <= ord(ch) <= 0x7E for ch in session_id)
    assert sealer.unseal(session_id) == claims
    assert claims.protocol_version == "2025-06-18"
    assert claims.params is not None
    assert claims.params["clientInfo"] == {"name": "inspector", "version": "1.2.3"}
    assert claims.owner == owner
    assert "inspector" not in session_id  # encrypted, not merely signed


def test_the_version_is_negotiated_as_the_sdk_does() -> None:
    sealer = SessionSealer([OLD], ttl=60)
    unknown = {**INITIALIZE, "params": {**INITIALIZE["params"], "protocolVersion": "1999-01-01"}}
    assert sealer.opening_claims(_body(unknown), None).protocol_version == LATEST_HANDSHAKE_VERSION
    for body in (
        b"",
        b"{nope",
        _body({"jsonrpc": "2.0", "id": 1, "method": "ping"}),
        _body({**INITIALIZE, "params": {}}),
    ):
        claims = sealer.opening_claims(body, None)
        assert claims.params is None
        assert claims.protocol_version == LATEST_HANDSHAKE_VERSION


def test_large_params_are_compressed() -> None:
    sealer = SessionSealer([OLD], ttl=60)
    big = {**INITIALIZE, "params": {**INITIALIZE["params"], "capabilities": {"experimental": {"x": {"k": "v" * 2000}}}}}
    session_id = sealer.seal(sealer.opening_claims(_body(big), None))
    assert len(session_id) < 1000
    claims = sealer.unseal(session_id)
    assert claims is not None
    assert claims.params is not None
    assert claims.params["capabilities"]["experimental"]["x"]["k"] == "v" * 2000


@pytest.mark.parametrize(
    "forged", ["", "x", "v1.", "v1.AAAA", "v1.!!!!", "v2." + "A" * 80, "é" * 10, "v1." + "A" * 200]
)
def test_anything_but_a_genuine_id_unseals_to_none(forged: str) -> None:
    assert SessionSealer([OLD], ttl=60).unseal(forged) is None


def test_a_tampered_id_is_refused() -> None:
    sealer = SessionSealer([OLD], ttl=60)
    session_id = sealer.seal(sealer.opening_claims(_body(), None))
    for position in (3, len(session_id) // 2, len(session_id) - 3):
        swapped = "A" if session_id[position] != "A" else "B"
        assert sealer.unseal(session_id[:position] + swapped + session_id[position + 1 :]) is None


def test_key_rotation_first_key_seals_every_key_unseals() -> None:
    clock = Clock()
    before = SessionSealer([OLD], ttl=60, clock=clock)
    during = SessionSealer([NEW, OLD], ttl=60, clock=clock)
    after = SessionSealer([NEW], ttl=60, clock=clock)
    old_id = before.seal(before.opening_claims(_body(), None))
    new_id = during.seal(during.opening_claims(_body(), None))
    assert during.unseal(old_id) is not None
    assert after.unseal(new_id) is not None  # sealed with the first key of the ring
    assert after.unseal(old_id) is None  # the old key is gone
    assert before.unseal(new_id) is None


def test_an_id_expires_after_the_ttl_and_cannot_come_from_the_future() -> None:
    clock = Clock()
    sealer = SessionSealer([OLD], ttl=600, clock=clock)
    session_id = sealer.seal(sealer.opening_claims(_body(), None))
    clock.now += 599
    assert sealer.unseal(session_id) is not None
    clock.now += 1
    assert sealer.unseal(session_id) is None
    clock.now -= 3600  # the replica's clock is an hour behind the one that sealed the id
    assert sealer.unseal(session_id) is None


def test_session_and_request_state_keys_are_separate() -> None:
    sealer = SessionSealer([OLD], ttl=60)
    session_id = sealer.seal(sealer.opening_claims(_body(), None))
    state_codec = AESGCMRequestStateCodec([derive_key(OLD, REQUEST_STATE_PURPOSE)])
    with pytest.raises(InvalidRequestState):
        state_codec.unseal(session_id)
    assert sealer.unseal(state_codec.seal(b'{"s": "x"}')) is None


# ------------------------------------------------------------------------- config
def test_the_sessions_section(tmp_path: Any) -> None:
    key = secrets.token_hex(32)
    path = tmp_path / "mcplane.yaml"
    path.write_text("sessions:\n  keys: ['${env:SESSION_KEY}']\n  ttl: 2h\n  request_state_ttl: 5m\n")
    config = load_config(path, environ={"SESSION_KEY": key})
    assert [k.get() for k in config.sessions.keys] == [key]
    assert (config.sessions.ttl, config.sessions.request_state_ttl, config.sessions.fail_open) == (7200, 300, False)
    assert PlaneConfig().sessions.keys == []
    path.write_text("sessions:\n  keys: ['short']\n")
    with pytest.raises(ConfigError, match=r"sessions\.keys: key #1 is shorter than 32 bytes") as caught:
        load_config(path, environ={})
    assert "short" not in str(caught.value).replace("shorter", "")


def test_configured_keys_seal_request_state_for_every_replica() -> None:
    from mcp.server.request_state import RequestStateBoundary

    def boundary(plane: Plane) -> RequestStateBoundary:
        found = [m for m in plane.sdk._lowlevel_server.middleware if isinstance(m, RequestStateBoundary)]
        assert len(found) == 1
        return found[0]

    key = secrets.token_hex(32)
    config = PlaneConfig.model_validate({"sessions": {"keys": [key], "request_state_ttl": "90s"}})
    a, b, alone = Plane("svc", config=config), Plane("svc", config=config), Plane("svc")
    state_a, state_b = boundary(a)._security, boundary(b)._security
    assert state_a.ttl == 90
    assert state_b.codec.unseal(state_a.codec.seal(b"round")) == b"round"
    with pytest.raises(InvalidRequestState):
        boundary(alone)._security.codec.unseal(state_a.codec.seal(b"round"))
    assert a.fast.enabled  # the hot path still sees only the SDK's own middleware


# ------------------------------------------------------------------------- adoption
@asynccontextmanager
async def running_manager() -> AsyncIterator[SessionManager]:
    """A running manager (a context manager, not a fixture: its task group stays in the test's task)."""
    plane = Plane("adopt")
    sealer = SessionSealer([OLD], ttl=600)
    manager = SessionManager(plane.sdk._lowlevel_server, sealer=sealer, revocations=Revocations(sealer), max_sessions=2)
    async with manager.run():
        yield manager


async def test_adoption_builds_an_initialized_session() -> None:
    async with running_manager() as manager:
        session_id = manager.sealer.seal(manager.sealer.opening_claims(_body(), None))
        assert await manager.adopt(session_id, None) == "adopted"
        assert session_id in manager._server_instances
        assert await manager.adopt(session_id, None) == "known"
        await manager.end(session_id)
        assert session_id not in manager._server_instances


async def test_an_adopted_session_keeps_nothing_of_its_adoption() -> None:
    """The server task lives as long as the session: the unsealed claims are not kept in it."""
    async with running_manager() as manager:
        session_id = manager.sealer.seal(manager.sealer.opening_claims(_body(), None))
        assert await manager.adopt(session_id, None) == "adopted"
        gc.collect()
        assert not [o for o in gc.get_objects() if isinstance(o, SessionClaims)]
        assert session_id in manager.sessions


async def test_adoption_refuses_another_credential() -> None:
    async with running_manager() as manager:
        alice = AuthorizationContext(client_id="app", issuer=None, subject="alice")
        mallory = AuthorizationContext(client_id="app", issuer=None, subject="mallory")
        session_id = manager.sealer.seal(manager.sealer.opening_claims(_body(), alice))
        assert await manager.adopt(session_id, mallory) == "unknown"
        assert await manager.adopt(session_id, None) == "unknown"
        assert await manager.adopt(session_id, alice) == "adopted"
        assert manager._session_owners[session_id] == alice


async def test_a_revoked_or_forged_id_is_not_adopted() -> None:
    async with running_manager() as manager:
        claims = manager.sealer.opening_claims(_body(), None)
        session_id = manager.sealer.seal(claims)
        await manager.revocations.revoke(claims)
        assert await manager.adopt(session_id, None) == "unknown"
        assert await manager.adopt("v1.forged", None) == "unknown"


async def test_adoption_respects_the_session_limit() -> None:
    async with running_manager() as manager:
        ids = [manager.sealer.seal(manager.sealer.opening_claims(_body(), None)) for _ in range(3)]
        assert [await manager.adopt(session_id, None) for session_id in ids] == ["adopted", "adopted", "full"]


async def test_adoption_restores_the_sessions_state_record_and_parking_drops_it() -> None:
    async with running_manager() as manager:
        session_id = manager.sealer.seal(manager.sealer.opening_claims(_body(), None))
        seen: list[Any] = []

        async def upstream_work() -> None:
            seen.append("awaited")

        def restore(connection: Any, record: Any) -> Any:
            seen.append((connection.session_id == session_id, dict(record)))
            return upstream_work()

        manager.state.restorers.append(restore)
        assert await manager.adopt(session_id, None) == "adopted"
        assert seen == [(True, {}), "awaited"]  # no record yet: restorers still see the connection
        seen.clear()
        assert await manager.state.write(session_id, "level", "warning")
        assert not manager.park("v1.not-a-session")
        assert manager.park(session_id)
        with anyio.fail_after(10):
            while session_id in manager.sessions:  # noqa: ASYNC110 - the server loop ends in its own task
                await anyio.sleep(0.01)
        assert await manager.adopt(session_id, None) == "adopted"
        assert seen == [(True, {"level": "warning"}), "awaited"]  # awaited before the adopting request goes on
        assert manager.park_idle() == 1


@pytest.mark.parametrize("fail_open", [False, True])
async def test_when_redis_cannot_answer_adoption_fails_closed_unless_told(fail_open: bool) -> None:
    async with running_manager() as manager:
        await _adopt_with_dead_redis(manager, fail_open)


async def _adopt_with_dead_redis(manager: SessionManager, fail_open: bool) -> None:
    dead = connect_redis(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5)
    manager.revocations.redis = dead
    manager.fail_open = fail_open
    try:
        session_id = manager.sealer.seal(manager.sealer.opening_claims(_body(), None))
        assert await manager.adopt(session_id, None) == ("adopted" if fail_open else "unavailable")
    finally:
        await dead.aclose()


# ------------------------------------------------------------------------- fan-out
def test_events_travel_as_their_notifications() -> None:
    assert event_message(ToolsListChanged()) == {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}
    assert event_message(ResourceUpdated(uri="notes://a")) == {
        "jsonrpc": "2.0",
        "method": "notifications/resources/updated",
        "params": {"uri": "notes://a"},
    }


async def test_the_plane_bus_delivers_locally_without_a_fanout() -> None:
    bus = PlaneBus()
    seen: list[Any] = []
    legacy: list[dict[str, Any]] = []

    async def sessions(message: dict[str, Any]) -> int:
        legacy.append(message)
        return 1

    unsubscribe = bus.subscribe(seen.append)
    detach = bus.attach(None, sessions)
    await bus.announce(ToolsListChanged())
    await bus.announce(ResourceUpdated(uri="notes://a"))
    assert seen == [ToolsListChanged(), ResourceUpdated(uri="notes://a")]
    assert legacy == [event_message(ToolsListChanged())]  # 2025 sessions get list changes only
    detach()
    unsubscribe()


@pytest.fixture
def redis_url() -> str:
    if not redis_answers("127.0.0.1", 6379) and REDIS_URL.startswith("redis://127.0.0.1:6379"):
        if os.environ.get("CI"):
            pytest.fail(f"no Redis answers at {REDIS_URL}")
        pytest.skip(f"no Redis answers at {REDIS_URL}")
    return REDIS_URL


async def test_two_replicas_share_a_channel_and_skip_their_own_echo(redis_url: str) -> None:
    channel = f"mcplane-test:fanout:{secrets.token_hex(6)}"
    received: dict[str, list[dict[str, Any]]] = {"a": [], "b": []}
    got = anyio.Event()
    clients = [connect_redis(redis_url), connect_redis(redis_url)]
    a, b = Fanout(channel), Fanout(channel)

    def handler(name: str) -> Any:
        async def handle(body: dict[str, Any]) -> None:
            received[name].append(body)
            got.set()

        return handle

    a.on("x", handler("a"))
    b.on("x", handler("b"))
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(a.run, clients[0])
            await tg.start(b.run, clients[1])
            await clients[0].publish(channel, b"not json")  # ignored, the subscription lives on
            a.publish("x", {"n": 1})
            with anyio.fail_after(10):
                await got.wait()
            assert [body["n"] for body in received["b"]] == [1]
            got = anyio.Event()
            b.publish("x", {"n": 2})
            with anyio.fail_after(10):
                await got.wait()
            assert [body["n"] for body in received["a"]] == [2]
            assert [body["n"] for body in received["b"]] == [1]  # no echo of its own message
            tg.cancel_scope.cancel()
    finally:
        for client in clients:
            await client.aclose()
