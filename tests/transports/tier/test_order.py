"""The order build_http_tier composes, seen from outside: each assertion is a request two layers
would answer differently, so it fails if those two layers swap places.

Outermost first: probes, Host/Origin, provider routes, authentication, MCP path, content type, body cap, session
adoption, drain, the endpoint.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson

from mcplane import Plane
from mcplane.auth import hash_api_key
from mcplane.config import PlaneConfig
from mcplane.transports.http import HTTPApp, HTTPOptions
from tests.transports.tier.asgi import chunks_receive, drive, http_scope, refusal_of

KEY = "tier-order-test-key-0123456789abcdef"
CALL = orjson.dumps({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "add", "arguments": {}}})
JSON = ("content-type", "application/json")
ACCEPT = ("accept", "application/json, text/event-stream")
CREDENTIAL = ("authorization", f"Bearer {KEY}")
OPENING = orjson.dumps(
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
)


def _plane(auth: bool) -> Plane:
    config: dict[str, Any] = {}
    if auth:
        config["auth"] = {"api_keys": [{"id": "k", "hash": hash_api_key(KEY), "subject": "ci"}]}
    plane = Plane("order", config=PlaneConfig.model_validate(config))

    @plane.tool()
    async def add(a: int = 0, b: int = 0) -> int:
        return a + b

    return plane


@asynccontextmanager
async def serving(*, auth: bool = True, max_sessions: int = 10) -> AsyncIterator[HTTPApp]:
    app = HTTPApp(_plane(auth), HTTPOptions(max_body_bytes=128, max_sessions=max_sessions))
    async with app.running():
        yield app


async def test_probes_come_before_the_host_check_and_authentication() -> None:
    async with serving() as app:
        answer = await drive(app, http_scope("GET", "/health", headers=[("host", "10.1.2.3:8000")]))
        assert answer.status == 200


async def test_the_host_check_comes_before_authentication() -> None:
    async with serving() as app:
        answer = await drive(app, http_scope(headers=[("host", "attacker.example"), JSON]))
        assert answer.status == 421, "a request from a rebinding page must not reach the credential check"


async def test_provider_routes_come_after_the_host_check_and_before_authentication() -> None:
    async with serving() as app:
        served: list[str] = []

        async def route(scope: Any, receive: Any, send: Any) -> None:
            served.append(scope["path"])
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        app.plane.layers.routes["/integrity/quarantine"] = route
        elsewhere = await drive(app, http_scope("GET", "/integrity/quarantine", headers=[("host", "attacker.example")]))
        assert elsewhere.status == 421
        answer = await drive(app, http_scope("GET", "/integrity/quarantine", headers=[("host", "localhost")]))
        assert answer.status == 204, "the route authenticates its own requests: no client credential asked"
        assert served == ["/integrity/quarantine"]


async def test_authentication_comes_before_the_path_check() -> None:
    async with serving() as app:
        metadata = await drive(
            app, http_scope("GET", "/.well-known/oauth-protected-resource", headers=[("host", "localhost")])
        )
        assert metadata.status == 200, "served by authentication, which the path check would have answered 404"


async def test_authentication_comes_before_the_content_type_check_and_the_body_is_not_read() -> None:
    async with serving() as app:
        receive, read = chunks_receive(b"x" * 200)
        headers = [("host", "localhost"), ("content-type", "text/plain"), ("content-length", "200")]
        answer = await drive(app, http_scope(headers=headers), receive)
        assert answer.status == 401
        assert read[0] == 0


async def test_the_content_type_check_comes_before_the_body_cap() -> None:
    async with serving() as app:
        receive, read = chunks_receive(b"x" * 200)
        headers = [("host", "localhost"), ("content-type", "text/plain"), ("content-length", "200"), CREDENTIAL]
        answer = await drive(app, http_scope(headers=headers), receive)
        assert answer.status == 415
        assert read[0] == 0


async def test_the_body_cap_comes_before_the_drain_check() -> None:
    async with serving() as app:
        app.draining = True
        receive, _ = chunks_receive(CALL[:40], CALL[40:] + b" " * 128)  # undeclared length, over the cap
        answer = await drive(app, http_scope(headers=[("host", "localhost"), JSON, ACCEPT, CREDENTIAL]), receive)
        assert answer.status == 413
        assert refusal_of(answer)["data"] == {"code": "payload_too_large"}


async def test_session_adoption_comes_before_the_drain_check() -> None:
    async with serving(auth=False, max_sessions=1) as app:
        manager = app._manager
        assert manager is not None
        assert await manager.adopt(manager.sealer.seal(manager.sealer.opening_claims(OPENING, None)), None) == "adopted"
        app.draining = True
        other = manager.sealer.seal(manager.sealer.opening_claims(OPENING, None))
        headers = [
            ("host", "localhost"),
            JSON,
            ACCEPT,
            ("mcp-session-id", other),
            ("mcp-protocol-version", "2025-11-25"),
        ]
        answer = await drive(app, http_scope(headers=headers), chunks_receive(CALL)[0])
        assert answer.status == 503
        assert refusal_of(answer)["message"] == "too many open sessions", "adoption answered, not the drain"


async def test_the_drain_check_comes_before_the_endpoint() -> None:
    async with serving() as app:
        app.draining = True
        headers = [("host", "localhost"), JSON, ACCEPT, CREDENTIAL, ("mcp-protocol-version", "2026-07-28")]
        answer = await drive(app, http_scope(headers=headers), chunks_receive(CALL)[0])
        assert (answer.status, answer.json()["id"]) == (503, 5)
        assert answer.json()["error"]["data"]["code"] == "dependency_unavailable"
