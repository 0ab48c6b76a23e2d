"""SessionAdoption alone, over a real session manager: a session sealed elsewhere is adopted
before the request goes on; when it cannot be adopted now, 503 with Retry-After."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson

from mcplane import Plane
from mcplane.transports.sealing import Revocations, SessionSealer
from mcplane.transports.sessions import SessionManager
from mcplane.transports.tier.adoption import SessionAdoption
from tests.transports.tier.asgi import Endpoint, drive, http_scope, refusal_of

KEY = secrets.token_bytes(32)
OPENING = orjson.dumps(
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
)


def _manager(max_sessions: int = 2) -> SessionManager:
    sealer = SessionSealer([KEY], ttl=600)
    return SessionManager(
        Plane("adopt").sdk._lowlevel_server, sealer=sealer, revocations=Revocations(sealer), max_sessions=max_sessions
    )


@asynccontextmanager
async def running(manager: SessionManager) -> AsyncIterator[SessionManager]:
    async with manager.run():
        yield manager


def _sealed(manager: SessionManager) -> str:
    """An id another replica with the same keys opened."""
    return manager.sealer.seal(manager.sealer.opening_claims(OPENING, None))


async def test_a_session_opened_elsewhere_is_adopted_before_the_request_goes_on() -> None:
    async with running(_manager()) as manager:
        endpoint = Endpoint()
        session_id = _sealed(manager)
        answer = await drive(SessionAdoption(endpoint, manager), http_scope(headers=[("mcp-session-id", session_id)]))
        assert answer.status == 200
        assert session_id in manager._server_instances
        assert len(endpoint.scopes) == 1
        await manager.end(session_id)


async def test_an_unknown_or_absent_session_goes_on_unadopted() -> None:
    async with running(_manager()) as manager:
        endpoint = Endpoint()
        layer = SessionAdoption(endpoint, manager)
        assert (await drive(layer, http_scope(headers=[("mcp-session-id", "v1.forged")]))).status == 200
        assert (await drive(layer, http_scope())).status == 200
        assert (len(endpoint.scopes), manager._server_instances) == (2, {})


async def test_a_full_replica_answers_503_with_retry_after() -> None:
    async with running(_manager(max_sessions=1)) as manager:
        endpoint = Endpoint()
        held = _sealed(manager)
        assert await manager.adopt(held, None) == "adopted"
        scope = http_scope(headers=[("mcp-session-id", _sealed(manager))])
        answer = await drive(SessionAdoption(endpoint, manager), scope)
        assert (answer.status, answer.headers["retry-after"]) == (503, "1")
        assert refusal_of(answer) == {
            "code": -32600,
            "message": "too many open sessions",
            "data": {"code": "dependency_unavailable"},
        }
        assert endpoint.scopes == []
        await manager.end(held)


async def test_a_session_that_cannot_be_checked_now_answers_503() -> None:
    manager = _manager()  # not running: it cannot take a session over
    answer = await drive(
        SessionAdoption(Endpoint(), manager), http_scope(headers=[("mcp-session-id", _sealed(manager))])
    )
    assert answer.status == 503
    assert refusal_of(answer)["message"] == "cannot check the session now"
