"""Caps on what idle clients can hold: open 2025-11-25 sessions, open WebSocket connections, and
WebSocket connections that say nothing (each refused or closed with a clear reason, and counted)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
import yaml
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.conftest import ServerProcess, start_server

APP = Path(__file__).with_name("caps_app.py")
ACCEPT = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}
MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("caps")
    config = tmp / "mcplane.yaml"
    config.write_text(
        yaml.safe_dump({"sessions": {"max_open": 3}, "http": {"max_websockets": 3, "ws_idle_timeout": "1s"}})
    )
    server = start_server(APP, tmp_path=tmp, extra_args=("--config", str(config)))
    yield server
    server.stop()


def _open_session(server: ServerProcess) -> httpx.Response:
    return httpx.post(server.url, json=INITIALIZE, headers=ACCEPT, timeout=10)


def test_sessions_past_the_cap_are_refused_clearly_until_one_ends(server: ServerProcess) -> None:
    opened = [_open_session(server) for _ in range(3)]
    assert [response.status_code for response in opened] == [200, 200, 200]
    refused = _open_session(server)
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["data"] == {"code": "dependency_unavailable"}
    assert "too many open sessions" in refused.json()["error"]["message"]
    session = opened[0].headers["mcp-session-id"]
    ended = httpx.delete(server.url, headers={"mcp-session-id": session, "mcp-protocol-version": "2025-11-25"})
    assert ended.status_code in (200, 204)
    assert _open_session(server).status_code == 200
    # 2026-07-28 requests open no session: the cap does not touch them.
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "add", "arguments": {"a": 1, "b": 2}}}
    call["params"]["_meta"] = MODERN_META  # type: ignore[index]
    headers = {**ACCEPT, "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": "add"}
    stateless = httpx.post(server.url, json=call, headers=headers, timeout=10)
    assert stateless.json()["result"]["structuredContent"] == {"result": 3}
    metrics = httpx.get(f"{server.base}/metrics", timeout=10).text
    assert 'reason="too_many_sessions"' in metrics


def _ws(stack: ExitStack, server: ServerProcess) -> ClientConnection:
    return stack.enter_context(connect(server.ws_url, subprotocols=["mcp"], open_timeout=10))  # type: ignore[list-item]


def _request(ws: ClientConnection, request_id: int, name: str) -> None:
    params = {"name": name, "arguments": {}, "_meta": MODERN_META}
    ws.send(json.dumps({"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}))


def _closed(ws: ClientConnection, timeout: float = 15) -> tuple[int | None, str]:
    """Wait (bounded) until the server closes ``ws``; its close code and reason."""
    try:
        while True:
            ws.recv(timeout=timeout)
    except ConnectionClosed as closed:
        received = closed.rcvd
        return (received.code, received.reason) if received is not None else (None, "")


def test_an_idle_websocket_is_closed_but_one_waiting_on_a_call_is_not(server: ServerProcess) -> None:
    with ExitStack() as stack:
        busy = _ws(stack, server)
        _request(busy, 1, "block")
        idle = _ws(stack, server)  # opened after busy sent its last message: it goes idle later than busy did
        assert _closed(idle) == (1000, "idle")
        other = _ws(stack, server)
        _request(other, 7, "release")
        assert json.loads(other.recv(timeout=10))["result"]["structuredContent"] == {"result": "ok"}
        answer = json.loads(busy.recv(timeout=10))
    assert answer["id"] == 1
    assert answer["result"]["structuredContent"] == {"result": "released"}


def test_websockets_past_the_cap_are_closed_with_try_again_later(server: ServerProcess) -> None:
    with ExitStack() as stack:
        for _ in range(3):
            _ws(stack, server)
        extra = _ws(stack, server)
        assert _closed(extra) == (1013, "too many connections; retry later")
    metrics = httpx.get(f"{server.base}/metrics", timeout=10).text
    assert 'reason="too_many_websockets"' in metrics
