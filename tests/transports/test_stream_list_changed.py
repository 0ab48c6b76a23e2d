"""List changes reach 2025-11-25 sessions on stdio and WebSocket connections, as notifications.

``Plane.notify_list_changed`` reaches ``subscriptions/listen`` streams (2026-07-28) and the GET
streams of HTTP sessions through the plane's bus; a stream connection registers its own sink
with that bus for its lifetime, and writes the notification only once its 2025-11-25 session is
initialized. A 2026-07-28 connection is never sent a notification it did not ask for.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp_types import ToolListChangedNotification
from websockets.asyncio.client import connect

from mcplane.fanout import PlaneBus, list_changed_event
from mcplane.transports.websocket import SUBPROTOCOL
from tests.conftest import REPO_ROOT, ServerProcess, start_server

SHIFTY_APP = REPO_ROOT / "tests" / "gateway" / "shifty_app.py"
TIMEOUT = 15.0


def _stdio() -> Any:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "mcplane.cli", "run", str(SHIFTY_APP)], cwd=str(REPO_ROOT)
    )
    return stdio_client(params)


class _Heard:
    def __init__(self) -> None:
        self.changed = anyio.Event()
        self.count = 0

    async def __call__(self, message: Any) -> None:
        if isinstance(getattr(message, "root", message), ToolListChangedNotification):
            self.count += 1
            self.changed.set()


async def test_a_legacy_stdio_session_hears_a_list_change() -> None:
    heard = _Heard()
    async with Client(_stdio(), mode="legacy", message_handler=heard) as client:  # pyright: ignore[reportArgumentType]
        await client.call_tool("redescribe", {"description": "Fetch, differently."})
        with anyio.fail_after(TIMEOUT):
            await heard.changed.wait()
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert tools["fetch"].description == "Fetch, differently."


async def test_a_modern_stdio_connection_is_not_sent_what_it_did_not_ask_for() -> None:
    heard = _Heard()
    async with Client(_stdio(), mode="2026-07-28", message_handler=heard) as client:  # pyright: ignore[reportArgumentType]
        await client.call_tool("redescribe", {"description": "Fetch, differently."})
        # The change was announced before redescribe answered, on the same ordered stream;
        # one more round trip after it leaves no room for a late notification.
        await client.list_tools()
        assert heard.count == 0


@pytest.fixture(scope="module")
def shifty_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server(SHIFTY_APP, tmp_path=tmp_path_factory.mktemp("shifty"))
    yield server
    server.stop()


async def _ws_call(ws: Any, request_id: int, method: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Send a request; return every frame up to and including its answer."""
    await ws.send(json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}))
    frames: list[dict[str, Any]] = []
    with anyio.fail_after(TIMEOUT):
        while True:
            frame = json.loads(await ws.recv(decode=True))
            frames.append(frame)
            if frame.get("id") == request_id:
                return frames


async def test_a_legacy_websocket_session_hears_a_list_change(shifty_server: ServerProcess) -> None:
    async with connect(shifty_server.ws_url, subprotocols=[SUBPROTOCOL], open_timeout=TIMEOUT) as ws:  # pyright: ignore[reportArgumentType]
        init = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
        await _ws_call(ws, 1, "initialize", init)
        # Before notifications/initialized the session may not be sent notifications.
        early = await _ws_call(ws, 2, "tools/call", {"name": "redescribe", "arguments": {"description": "one"}})
        assert [f.get("method") for f in early] == [None]
        await ws.send(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        frames = await _ws_call(ws, 3, "tools/call", {"name": "redescribe", "arguments": {"description": "two"}})
        assert [f.get("method") for f in frames] == ["notifications/tools/list_changed", None]


async def test_a_connection_that_ended_is_no_longer_a_sink(shifty_server: ServerProcess) -> None:
    init = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
    async with connect(shifty_server.ws_url, subprotocols=[SUBPROTOCOL], open_timeout=TIMEOUT) as ws:  # pyright: ignore[reportArgumentType]
        await _ws_call(ws, 1, "initialize", init)
        await ws.send(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}))
    # A second connection's change is announced with the first one gone: it still arrives.
    async with connect(shifty_server.ws_url, subprotocols=[SUBPROTOCOL], open_timeout=TIMEOUT) as ws:  # pyright: ignore[reportArgumentType]
        await _ws_call(ws, 1, "initialize", init)
        await ws.send(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        frames = await _ws_call(ws, 2, "tools/call", {"name": "redescribe", "arguments": {"description": "x"}})
        assert [f.get("method") for f in frames] == ["notifications/tools/list_changed", None]


async def test_the_bus_reaches_every_sink_even_past_a_broken_one() -> None:
    bus = PlaneBus()
    got: list[str] = []

    async def broken(message: dict[str, Any]) -> None:
        raise OSError("gone")

    async def first(message: dict[str, Any]) -> None:
        got.append("first:" + message["method"])

    async def second(message: dict[str, Any]) -> None:
        got.append("second:" + message["method"])

    remove_broken = bus.add_sink(broken)
    bus.add_sink(first)
    detach = bus.attach(None, second)  # the HTTP tier's sessions: one more sink
    await bus.announce(list_changed_event("tools"))
    assert got == ["first:notifications/tools/list_changed", "second:notifications/tools/list_changed"]
    detach()
    remove_broken()
    remove_broken()  # removing twice is harmless
    got.clear()
    await bus.announce(list_changed_event("prompts"))
    assert got == ["first:notifications/prompts/list_changed"]
