"""A 2025-11-25 session's log level and resource subscriptions outlive its ``Connection``.

A gateway session is dropped while idle (``SessionManager.park``, what ``sessions.idle_timeout``
does) and adopted again from its id on its next request, on the same replica or on another one
sharing its keys and Redis: the ``logging/setLevel`` floor still filters relayed log messages and
a resource update still reaches the session's GET stream.
"""

from __future__ import annotations

import json
import secrets
import sys
from collections.abc import AsyncGenerator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import httpx

from mcplane import Plane
from mcplane.gateway import Gateway
from mcplane.transports.http import HTTPApp
from mcplane.transports.session_state import session_state
from mcplane.transports.sessions import SessionManager
from tests.conftest import REPO_ROOT
from tests.e2e.test_replicas import (
    ACCEPT,
    INITIALIZE,
    LEGACY,
    redis_url,  # noqa: F401  # pyright: ignore[reportUnusedImport] - the fixture
)
from tests.gateway.conftest import UPSTREAM_APP
from tests.serving import loopback_socket, serve_on

WAIT = 20.0


def _gateway(keys: Sequence[str], redis: str | None) -> Plane:
    args = ["-m", "mcplane.cli", "run", str(UPSTREAM_APP)]
    command = {"command": sys.executable, "args": args, "cwd": str(REPO_ROOT)}
    upstream = {"endpoints": [command], "mode": "legacy"}
    return Gateway.from_config(
        {
            "server": {"name": "gw", "default_timeout": "20s"},
            "sessions": {"keys": list(keys)},
            "redis_url": redis,
            "observability": {"metrics": {"enabled": False}},
            "upstreams": {"up": upstream},
        }
    )


@asynccontextmanager
async def _gateways(count: int, redis: str | None) -> AsyncGenerator[list[tuple[str, HTTPApp]]]:
    keys = [secrets.token_hex(32)]
    async with AsyncExitStack() as stack:
        served: list[tuple[str, HTTPApp]] = []
        for _ in range(count):
            app = _gateway(keys, redis).http_app()
            sock, url = loopback_socket()
            await stack.enter_async_context(serve_on(sock, app, lifespan="on"))
            served.append((f"{url}/mcp", app))
        yield served


def _manager(app: HTTPApp) -> SessionManager:
    manager = app._manager  # pyright: ignore[reportPrivateUsage]
    assert manager is not None
    return manager


def _messages(text: str) -> list[dict[str, Any]]:
    """The JSON-RPC messages of an SSE body (or of a JSON one)."""
    if text.lstrip().startswith("{"):
        return [json.loads(text)]
    return [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:") and line[5:].strip()]


async def _rpc(http: httpx.AsyncClient, url: str, session: str, method: str, params: dict[str, Any]) -> list[Any]:
    body = {"jsonrpc": "2.0", "id": secrets.randbelow(1 << 30), "method": method, "params": params}
    response = await http.post(url, json=body, headers={**LEGACY, "mcp-session-id": session})
    assert response.status_code == 200, response.text
    return _messages(response.text)


async def _open(http: httpx.AsyncClient, url: str) -> str:
    response = await http.post(url, json=INITIALIZE, headers=ACCEPT)
    assert response.status_code == 200
    session = response.headers["mcp-session-id"]
    initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    answer = await http.post(url, json=initialized, headers={**LEGACY, "mcp-session-id": session})
    assert answer.status_code == 202
    return session


async def _drop(app: HTTPApp, session: str) -> None:
    manager = _manager(app)
    with anyio.fail_after(WAIT):
        while not manager.park(session):  # noqa: ASYNC110 - the last answer's request is ending
            await anyio.sleep(0.01)
        while session in manager.sessions:  # noqa: ASYNC110 - the server loop ends in its own task
            await anyio.sleep(0.01)


def _logs(messages: list[Any]) -> list[str]:
    return [m["params"]["level"] for m in messages if m.get("method") == "notifications/message"]


def _text(messages: list[Any]) -> str:
    (result,) = [m["result"] for m in messages if "result" in m]
    return "".join(block.get("text", "") for block in result["content"])


async def _restored(http: httpx.AsyncClient, first: tuple[str, HTTPApp], then: tuple[str, HTTPApp]) -> None:
    (url, app), (next_url, next_app) = first, then
    session = await _open(http, url)
    await _rpc(http, url, session, "logging/setLevel", {"level": "warning"})
    await _rpc(http, url, session, "resources/subscribe", {"uri": "test://note"})
    assert _logs(await _rpc(http, url, session, "tools/call", {"name": "up__chatty", "arguments": {}})) == ["warning"]
    await _drop(app, session)
    assert session not in _manager(next_app).sessions

    updates: list[str] = []
    heard = anyio.Event()
    get = {"accept": "text/event-stream", "mcp-protocol-version": "2025-11-25", "mcp-session-id": session}
    async with http.stream("GET", next_url, headers=get) as stream:  # adopts the session
        assert stream.status_code == 200

        async def listen() -> None:
            async for line in stream.aiter_lines():
                if line.startswith("data:") and line[5:].strip():
                    message = json.loads(line[5:])
                    if message.get("method") == "notifications/resources/updated":
                        updates.append(message["params"]["uri"])
                        heard.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(listen)
            chatty = await _rpc(http, next_url, session, "tools/call", {"name": "up__chatty", "arguments": {}})
            assert _text(chatty) == "said"
            assert _logs(chatty) == ["warning"]  # the floor came back: no "info"
            touch = {"name": "up__touch", "arguments": {"uri": "test://note"}}
            assert _text(await _rpc(http, next_url, session, "tools/call", touch)) == "touched"
            with anyio.fail_after(WAIT):
                await heard.wait()
            tg.cancel_scope.cancel()
    assert updates[0] == "test://note"


async def test_a_dropped_gateway_session_keeps_its_log_level_and_subscriptions() -> None:
    async with _gateways(1, None) as served, httpx.AsyncClient(timeout=WAIT) as http:
        (url, app), *_ = served
        await _restored(http, (url, app), (url, app))
        manager = _manager(app)
        (session,) = manager.sessions
        state = session_state(manager.app)
        assert state.local(session) == {"gateway.logLevel": "warning", "gateway.subscriptions": ["test://note"]}
        assert (await _rpc(http, url, session, "resources/unsubscribe", {"uri": "test://note"})) is not None
        assert state.local(session) == {"gateway.logLevel": "warning"}
        response = await http.delete(url, headers={**LEGACY, "mcp-session-id": session})
        assert response.status_code == 200
        assert state.local(session) == {}


async def test_a_gateway_session_dropped_on_one_replica_keeps_its_state_on_another(redis_url: str) -> None:  # noqa: F811
    async with _gateways(2, redis_url) as served, httpx.AsyncClient(timeout=WAIT) as http:
        await _restored(http, served[0], served[1])


async def test_an_adopted_gateway_session_keeps_the_hot_path_and_hears_list_changes() -> None:
    """A session adopted again is known to the gateway as if it had initialized there."""
    async with _gateways(1, None) as served, httpx.AsyncClient(timeout=WAIT) as http:
        ((url, app),) = served
        session = await _open(http, url)
        await _drop(app, session)
        fast = app.plane.fast
        before = fast.served
        add = {"name": "up__add", "arguments": {"a": 2, "b": 3}}
        assert _text(await _rpc(http, url, session, "tools/call", add)) == "5"  # adopts the session
        assert fast.served == before + 1  # on the hot path

        changed = anyio.Event()
        get = {"accept": "text/event-stream", "mcp-protocol-version": "2025-11-25", "mcp-session-id": session}
        async with http.stream("GET", url, headers=get) as stream:
            assert stream.status_code == 200

            async def listen() -> None:
                async for line in stream.aiter_lines():
                    if line.startswith("data:") and "notifications/tools/list_changed" in line:
                        changed.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(listen)
                grow = {"name": "up__grow", "arguments": {"name": "fresh"}}
                assert _text(await _rpc(http, url, session, "tools/call", grow)) == "grown"
                with anyio.fail_after(WAIT):
                    await changed.wait()
                tg.cancel_scope.cancel()
