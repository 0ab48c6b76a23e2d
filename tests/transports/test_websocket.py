"""The WebSocket transport (SEP-1288) against a real server: what it refuses, and how it closes."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from mcplane import Plane
from mcplane.transports.http import HTTPApp
from mcplane.transports.websocket import SUBPROTOCOL
from tests.conftest import ServerProcess

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}
TIMEOUT = 10


async def _recv_json(ws: ClientConnection) -> dict[str, Any]:
    return json.loads(await ws.recv(decode=True))


async def _initialize(ws: ClientConnection) -> None:
    await ws.send(json.dumps(INITIALIZE))
    answer = await _recv_json(ws)
    assert answer["id"] == 1
    assert answer["result"]["protocolVersion"] == "2025-11-25"
    await ws.send(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}))


async def _close_code(ws: ClientConnection) -> tuple[int | None, str | None]:
    with pytest.raises(ConnectionClosed) as closed:
        await ws.recv()
    received = closed.value.rcvd
    return (received.code, received.reason) if received is not None else (None, None)


async def test_accepts_the_mcp_subprotocol(e2e_server: ServerProcess) -> None:
    async with connect(e2e_server.ws_url, subprotocols=[SUBPROTOCOL], open_timeout=TIMEOUT) as ws:  # pyright: ignore[reportArgumentType]
        assert ws.subprotocol == "mcp"
        await _initialize(ws)


async def test_missing_subprotocol_is_closed_with_1008(e2e_server: ServerProcess) -> None:
    async with connect(e2e_server.ws_url, open_timeout=TIMEOUT) as ws:
        assert ws.subprotocol is None
        assert await _close_code(ws) == (1008, "subprotocol 'mcp' required")


@pytest.mark.parametrize("header", [{"Host": "attacker.example"}, {"Origin": "https://attacker.example"}])
async def test_bad_host_or_origin_is_refused(e2e_server: ServerProcess, header: dict[str, str]) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(
            e2e_server.ws_url,
            subprotocols=[SUBPROTOCOL],  # pyright: ignore[reportArgumentType]
            additional_headers=header,
            open_timeout=TIMEOUT,
        ):
            pytest.fail("the handshake should have been refused")
    assert refused.value.response.status_code == 403


async def test_wrong_path_is_refused(e2e_server: ServerProcess) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(f"ws://127.0.0.1:{e2e_server.port}/other", subprotocols=[SUBPROTOCOL], open_timeout=TIMEOUT):  # pyright: ignore[reportArgumentType]
            pytest.fail("the handshake should have been refused")
    assert refused.value.response.status_code == 403


async def test_invalid_json_gets_a_parse_error_and_the_connection_keeps_working(e2e_server: ServerProcess) -> None:
    async with connect(e2e_server.ws_url, subprotocols=[SUBPROTOCOL], open_timeout=TIMEOUT) as ws:  # pyright: ignore[reportArgumentType]
        await ws.send("{this is not json")
        error = await _recv_json(ws)
        assert error["id"] is None
        assert error["error"]["code"] == -32700
        await _initialize(ws)
        await ws.send(json.dumps({"jsonrpc": "2.0", "id": 2, "method": "ping"}))
        assert await _recv_json(ws) == {"jsonrpc": "2.0", "id": 2, "result": {}}


async def test_non_jsonrpc_frames_get_invalid_request_with_their_id(e2e_server: ServerProcess) -> None:
    async with connect(e2e_server.ws_url, subprotocols=[SUBPROTOCOL], open_timeout=TIMEOUT) as ws:  # pyright: ignore[reportArgumentType]
        await ws.send(json.dumps({"id": 5, "method": 42}))
        error = await _recv_json(ws)
        assert (error["id"], error["error"]["code"]) == (5, -32600)
        await ws.send(json.dumps([{"jsonrpc": "2.0", "id": 6, "method": "ping"}]))
        batch = await _recv_json(ws)
        assert (batch["id"], batch["error"]["code"]) == (None, -32600)
        await _initialize(ws)


async def test_binary_frame_closes_with_1003(e2e_server: ServerProcess) -> None:
    async with connect(e2e_server.ws_url, subprotocols=[SUBPROTOCOL], open_timeout=TIMEOUT) as ws:  # pyright: ignore[reportArgumentType]
        await ws.send(b"\x00\x01binary")
        code, _ = await _close_code(ws)
        assert code == 1003


async def test_oversized_frame_closes_with_1009(e2e_server: ServerProcess) -> None:
    async with connect(
        e2e_server.ws_url,
        subprotocols=[SUBPROTOCOL],  # pyright: ignore[reportArgumentType]
        max_size=None,
        open_timeout=TIMEOUT,
    ) as ws:
        await ws.send(" " * (4 * 1024 * 1024 + 1))
        code, _ = await _close_code(ws)
        assert code == 1009


async def test_client_leaving_mid_call_is_not_an_error(e2e_server: ServerProcess) -> None:
    async with connect(e2e_server.ws_url, subprotocols=[SUBPROTOCOL], open_timeout=TIMEOUT) as probe:  # pyright: ignore[reportArgumentType]
        await _initialize(probe)
        baseline = await _server_tasks(probe, 10)

        async with connect(e2e_server.ws_url, subprotocols=[SUBPROTOCOL], open_timeout=TIMEOUT) as ws:  # pyright: ignore[reportArgumentType]
            await _initialize(ws)
            params = {"name": "steps", "arguments": {"n": 5000}, "_meta": {"progressToken": "p"}}
            await ws.send(json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": params}))
            progress = await _recv_json(ws)
            assert progress["method"] == "notifications/progress"
        # Gone mid-answer. The server winds the connection down: its tasks go away, quietly.
        with anyio.fail_after(TIMEOUT):
            request_id = 11
            while await _server_tasks(probe, request_id) > baseline:
                request_id += 1
        await probe.send(json.dumps({"jsonrpc": "2.0", "id": 99, "method": "ping"}))
        assert await _recv_json(probe) == {"jsonrpc": "2.0", "id": 99, "result": {}}
    log = e2e_server.stderr()
    assert "websocket connection failed" not in log
    assert "ClientDisconnected" not in log


async def _server_tasks(ws: ClientConnection, request_id: int) -> int:
    call = {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": "diagnostics", "arguments": {}},
    }
    await ws.send(json.dumps(call))
    answer = await _recv_json(ws)
    assert answer["id"] == request_id
    return answer["result"]["structuredContent"]["tasks"]


async def _asgi_websocket(app: HTTPApp, *, subprotocols: list[str], headers: list[tuple[bytes, bytes]]) -> list[Any]:
    """Drive one WebSocket connection through the ASGI app in process; return what it sent."""
    incoming = [{"type": "websocket.connect"}]
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        if incoming:
            return incoming.pop(0)
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "websocket", "path": "/mcp", "headers": headers, "subprotocols": subprotocols}
    with anyio.fail_after(TIMEOUT):
        await app(scope, receive, send)
    return sent


async def test_not_ready_is_closed_with_1013_after_accepting() -> None:
    app = HTTPApp(Plane("idle"))  # its lifespan never ran
    sent = await _asgi_websocket(app, subprotocols=["mcp"], headers=[(b"host", b"127.0.0.1:1")])
    assert sent == [
        {"type": "websocket.accept", "subprotocol": "mcp"},
        {"type": "websocket.close", "code": 1013, "reason": "server not ready"},
    ]


async def test_refusals_close_before_accepting() -> None:
    app = HTTPApp(Plane("guarded"))
    sent = await _asgi_websocket(app, subprotocols=["mcp"], headers=[(b"host", b"attacker.example")])
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": "host not allowed"}]
