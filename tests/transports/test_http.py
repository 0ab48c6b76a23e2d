"""The HTTP tier: guards and caps answered with JSON-RPC error bodies, health and readiness.

Most tests talk to a real server subprocess; the readiness of an app whose lifespan has not run
is checked in-process.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import httpx
import orjson
import pytest

from mcplane import Plane
from mcplane.transports.http import DEFAULT_MAX_BODY_BYTES, HTTPApp, HTTPOptions
from tests.conftest import ServerProcess

ACCEPT = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}


def _jsonrpc_error(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["jsonrpc"] == "2.0"
    assert body["id"] is None
    return body["error"]


@pytest.fixture
def http(e2e_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=e2e_server.base, timeout=10) as client:
        yield client


def test_health_and_ready(http: httpx.Client) -> None:
    health = http.get("/health")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    ready = http.get("/ready")
    assert (ready.status_code, ready.json()) == (200, {"status": "ready", "checks": {"server": "ok"}})


def test_unknown_path_is_404_with_a_jsonrpc_body(http: httpx.Client) -> None:
    response = http.post("/elsewhere", json=INITIALIZE, headers=ACCEPT)
    assert response.status_code == 404
    assert _jsonrpc_error(response)["data"] == {"code": "not_found"}


def test_wrong_host_is_421_with_a_jsonrpc_body(http: httpx.Client) -> None:
    response = http.post("/mcp", json=INITIALIZE, headers={**ACCEPT, "host": "attacker.example"})
    assert response.status_code == 421
    error = _jsonrpc_error(response)
    assert error["code"] == -32600
    assert error["message"] == "host not allowed"
    assert error["data"] == {"code": "forbidden"}


def test_bad_origin_is_403_with_a_jsonrpc_body(http: httpx.Client) -> None:
    response = http.post("/mcp", json=INITIALIZE, headers={**ACCEPT, "origin": "https://attacker.example"})
    assert response.status_code == 403
    error = _jsonrpc_error(response)
    assert error["code"] == -32600
    assert error["message"] == "origin not allowed"
    assert error["data"] == {"code": "forbidden"}


def test_loopback_origin_is_allowed(http: httpx.Client, e2e_server: ServerProcess) -> None:
    response = http.post("/mcp", json=INITIALIZE, headers={**ACCEPT, "origin": f"http://localhost:{e2e_server.port}"})
    assert response.status_code == 200
    session = response.headers["mcp-session-id"]
    assert http.delete("/mcp", headers={"mcp-session-id": session}).status_code == 200


def test_declared_oversized_body_is_413_before_it_is_read(http: httpx.Client) -> None:
    response = http.post("/mcp", content=b" " * (DEFAULT_MAX_BODY_BYTES + 1), headers=ACCEPT)
    assert response.status_code == 413
    assert _jsonrpc_error(response)["data"] == {"code": "payload_too_large"}


def test_chunked_oversized_body_is_413_with_a_jsonrpc_body(http: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(5):
            yield b" " * (1024 * 1024)

    response = http.post("/mcp", content=chunks(), headers=ACCEPT)
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert _jsonrpc_error(response)["data"] == {"code": "payload_too_large"}


def test_chunked_body_under_the_cap_is_served(http: httpx.Client) -> None:
    payload = orjson.dumps(INITIALIZE)

    def chunks() -> Iterator[bytes]:
        yield payload[:10]
        yield payload[10:]

    response = http.post("/mcp", content=chunks(), headers=ACCEPT)
    assert response.status_code == 200
    assert '"protocolVersion":"2025-11-25"' in response.text
    http.delete("/mcp", headers={"mcp-session-id": response.headers["mcp-session-id"]})


def test_malformed_json_is_a_parse_error(http: httpx.Client) -> None:
    response = http.post("/mcp", content=b'{"jsonrpc": "2.0", "id": 1,', headers=ACCEPT)
    assert response.status_code == 400
    assert _jsonrpc_error(response)["code"] == -32700


def test_server_keeps_serving_after_bad_requests(http: httpx.Client) -> None:
    http.post("/mcp", content=b"{nope", headers=ACCEPT)
    http.post("/mcp", json=INITIALIZE, headers={**ACCEPT, "host": "attacker.example"})
    response = http.post("/mcp", json=INITIALIZE, headers=ACCEPT)
    assert response.status_code == 200
    http.delete("/mcp", headers={"mcp-session-id": response.headers["mcp-session-id"]})


async def test_not_ready_until_the_lifespan_runs() -> None:
    app = HTTPApp(Plane("idle"), HTTPOptions())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        assert (await client.get("/health")).status_code == 200
        ready = await client.get("/ready")
        assert (ready.status_code, ready.json()) == (503, {"status": "not ready", "checks": {"server": "not started"}})
        call = await client.post("/mcp", json=INITIALIZE, headers=ACCEPT)
        assert call.status_code == 503
        assert _jsonrpc_error(call)["data"] == {"code": "dependency_unavailable"}


async def test_custom_cap_and_allow_lists_apply() -> None:
    app = HTTPApp(Plane("capped"), HTTPOptions(max_body_bytes=64, allowed_hosts=("api.example",)))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.example") as client:
        too_big = await client.post("/mcp", content=b" " * 65, headers=ACCEPT)
        assert too_big.status_code == 413
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        loopback = await client.post("/mcp", json=INITIALIZE, headers=ACCEPT)
        assert loopback.status_code == 421


async def _drive_lifespan(app: HTTPApp) -> list[str]:
    """Run the ASGI lifespan protocol as a server would: startup, then shutdown if it started."""
    to_app_send, to_app = anyio.create_memory_object_stream[dict[str, Any]](4)
    from_app_send, from_app = anyio.create_memory_object_stream[dict[str, Any]](4)
    answers: list[str] = []
    async with to_app_send, to_app, from_app_send, from_app, anyio.create_task_group() as tg:

        async def run_app() -> None:
            await app({"type": "lifespan"}, to_app.receive, from_app_send.send)

        tg.start_soon(run_app)
        await to_app_send.send({"type": "lifespan.startup"})
        with anyio.fail_after(10):
            answers.append((await from_app.receive())["type"])
            if answers[-1] == "lifespan.startup.complete":
                await to_app_send.send({"type": "lifespan.shutdown"})
                answers.append((await from_app.receive())["type"])
    return answers


def _plane_with_dependency(fail_on: str) -> Plane:
    plane = Plane("lifespan")

    @plane.dependency
    async def db() -> AsyncIterator[str]:
        if fail_on == "open":
            raise ConnectionError("database unreachable")
        yield "db"
        if fail_on == "close":
            raise ConnectionError("flush failed")

    return plane


async def test_lifespan_startup_and_shutdown() -> None:
    assert await _drive_lifespan(HTTPApp(_plane_with_dependency("never"))) == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]


async def test_a_dependency_failing_to_open_fails_the_startup() -> None:
    assert await _drive_lifespan(HTTPApp(_plane_with_dependency("open"))) == ["lifespan.startup.failed"]


async def test_a_dependency_failing_to_close_fails_the_shutdown_not_the_startup() -> None:
    assert await _drive_lifespan(HTTPApp(_plane_with_dependency("close"))) == [
        "lifespan.startup.complete",
        "lifespan.shutdown.failed",
    ]
