"""Replicas without sticky sessions: three uvicorn servers sharing Redis and session keys.

The official SDK client talks to them through :class:`RoundRobin`, an HTTP transport that sends
each request to the next replica (or to the one a test pins), as a load balancer without
session affinity would.
"""

from __future__ import annotations

import gc
import json
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import httpx
import httpx2
import pytest
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import ToolsListChanged
from mcp_types import (
    ElicitRequest,
    ElicitRequestFormParams,
    ElicitRequestParams,
    ElicitResult,
    InputRequiredResult,
    ResourceUpdatedNotification,
    ServerNotification,
    TextContent,
    ToolListChangedNotification,
)

from mcplane import Context, Plane
from mcplane.config import PlaneConfig
from mcplane.transports.http import HTTPApp
from mcplane.transports.sealing import SessionClaims, SessionSealer
from mcplane.transports.tier.headers import HEADERS_KEY
from tests.backends.harness import redis_answers
from tests.serving import ReadyServer

REDIS_URL = os.environ.get("MCPLANE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
ACCEPT = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
LEGACY = {**ACCEPT, "mcp-protocol-version": "2025-11-25"}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}
LIST_TOOLS = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}


@pytest.fixture(scope="module")
def redis_url() -> str:
    from redis.asyncio.connection import parse_url

    params = parse_url(REDIS_URL)
    if not redis_answers(str(params.get("host", "127.0.0.1")), int(params.get("port", 6379))):
        if os.environ.get("CI"):
            pytest.fail(f"no Redis answers at {REDIS_URL}")
        pytest.skip(f"no Redis answers at {REDIS_URL}")
    return REDIS_URL


def build_plane(
    name: str, label: str, *, keys: Sequence[str], redis_url: str | None, idle_timeout: float = 1800.0
) -> Plane:
    """One replica's plane: same tools everywhere; ``where`` tells which replica served."""
    config = PlaneConfig.model_validate(
        {
            "server": {"name": name},
            "sessions": {"keys": list(keys), "ttl": "10m", "idle_timeout": idle_timeout},
            "redis_url": redis_url,
            "observability": {"metrics": {"enabled": False}},
        }
    )
    plane = Plane(name, config=config)

    @plane.tool()
    def add(a: int, b: int) -> int:
        return a + b

    @plane.tool()
    async def where(ctx: Context) -> str:
        return label

    @plane.resource("notes://today")
    def today() -> str:
        return f"notes from {label}"

    @plane.prompt()
    def greet(name: str) -> str:
        return f"Hello {name}, from {label}"

    @plane.tool()
    async def announce() -> str:
        await plane.notify_list_changed("tools")
        return label

    @plane.tool()
    async def touch(uri: str, ctx: Context) -> str:
        await ctx.session.send_resource_updated(uri)  # the session's own stream, not this request's
        return label

    @plane.tool()
    async def change_tools(ctx: Context) -> str:
        await ctx.notify_tools_changed()  # the SDK's API: subscriptions/listen streams
        return label

    @plane.tool()
    def ask_name(ctx: Context) -> str | InputRequiredResult:
        answer = (ctx.input_responses or {}).get("name")
        if not isinstance(answer, ElicitResult) or ctx.request_state != "round-1":
            schema: Any = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
            ask = ElicitRequestFormParams(message="Your name?", requested_schema=schema)
            return InputRequiredResult(input_requests={"name": ElicitRequest(params=ask)}, request_state="round-1")
        return f"Hello, {(answer.content or {}).get('name')}! (answered on {label})"

    return plane


@asynccontextmanager
async def serve(app: HTTPApp) -> AsyncIterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    server = ReadyServer(uvicorn.Config(app, lifespan="on", log_level="warning", timeout_graceful_shutdown=5))
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            with anyio.fail_after(20):
                await server.ready.wait()
            try:
                yield port
            finally:
                server.should_exit = True
    finally:
        sock.close()


@asynccontextmanager
async def replicas(
    count: int = 3,
    *,
    keys: Sequence[str] | None = None,
    rings: Sequence[Sequence[str]] | None = None,
    redis_url: str | None,
) -> AsyncIterator[tuple[list[int], list[HTTPApp]]]:
    """``count`` replicas sharing ``keys`` (a fresh key when not given), or each with its ring of ``rings``."""
    name = f"replicas-{secrets.token_hex(4)}"
    shared = [secrets.token_hex(32)] if keys is None else keys
    ring_of = list(rings) if rings is not None else [shared] * count
    apps = [build_plane(name, "ABC"[i], keys=ring_of[i], redis_url=redis_url).http_app() for i in range(len(ring_of))]
    async with AsyncExitStack() as stack:
        ports = [await stack.enter_async_context(serve(app)) for app in apps]
        yield ports, apps


class RoundRobin(httpx2.AsyncBaseTransport):
    """Each request to the next replica, or to ``pinned``; ``log`` says who got what."""

    def __init__(self, ports: Sequence[int]) -> None:
        self.ports = list(ports)
        self.turn = 0
        self.pinned: int | None = None
        self.log: list[tuple[int, str, str]] = []
        """(replica, HTTP method, JSON-RPC method or "")."""
        self._inner = httpx2.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        index = self.pinned
        if index is None:
            index, self.turn = self.turn, (self.turn + 1) % len(self.ports)
        port = self.ports[index]
        request.url = request.url.copy_with(port=port)
        request.headers["host"] = f"127.0.0.1:{port}"
        rpc = ""
        if request.method == "POST":
            try:
                rpc = str(json.loads(request.content).get("method", ""))
            except (ValueError, AttributeError, httpx2.RequestNotRead):
                rpc = ""
        self.log.append((index, request.method, rpc))
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()

    def served(self, rpc: str) -> list[int]:
        return [index for index, _, method in self.log if method == rpc]


def _text(result: Any) -> str:
    content = result.content[0]
    assert isinstance(content, TextContent)
    return content.text


async def _wait_for(condition: Any, seconds: float = 10.0) -> None:
    """Poll ``condition()`` until true (fails after ``seconds``)."""
    with anyio.fail_after(seconds):
        while not condition():  # noqa: ASYNC110 - state another task changes; no event to wait on
            await anyio.sleep(0.01)


# ------------------------------------------------------------------------- (a) 2025-11-25 on any replica
async def test_a_session_opened_on_one_replica_is_served_by_the_others(redis_url: str) -> None:
    async with replicas(redis_url=redis_url) as (ports, apps):
        rr = RoundRobin(ports)
        async with httpx2.AsyncClient(transport=rr) as http:
            rr.pinned = 0
            with anyio.fail_after(30):
                async with Client(
                    streamable_http_client(f"http://127.0.0.1:{ports[0]}/mcp", http_client=http), mode="legacy"
                ) as client:
                    for replica, label in ((1, "B"), (2, "C")):
                        rr.pinned = replica
                        assert {tool.name for tool in (await client.list_tools()).tools} >= {"add", "where"}
                        assert _text(await client.call_tool("add", {"a": 2, "b": 3})) == "5"
                        assert _text(await client.call_tool("where", {})) == label
                        read = await client.read_resource("notes://today")
                        assert getattr(read.contents[0], "text", None) == f"notes from {label}"
                        prompt = await client.get_prompt("greet", {"name": "Ada"})
                        assert isinstance(prompt.messages[0].content, TextContent)
                        assert prompt.messages[0].content.text == f"Hello Ada, from {label}"
                    rr.pinned = 0
        assert rr.served("initialize") == [0]
        for replica in (1, 2):
            assert replica in rr.served("tools/call")
            assert replica in rr.served("resources/read")
            assert replica in rr.served("prompts/get")
            fast = apps[replica].fast
            assert fast is not None
            assert fast.served >= 1


async def test_round_robin_on_every_request_keeps_one_session(redis_url: str) -> None:
    async with replicas(redis_url=redis_url) as (ports, _apps):
        rr = RoundRobin(ports)
        async with httpx2.AsyncClient(transport=rr) as http:
            with anyio.fail_after(30):
                async with Client(
                    streamable_http_client(f"http://127.0.0.1:{ports[0]}/mcp", http_client=http), mode="legacy"
                ) as client:
                    labels = {_text(await client.call_tool("where", {})) for _ in range(6)}
                    assert [_text(await client.call_tool("add", {"a": i, "b": 1})) for i in range(6)] == [
                        str(i + 1) for i in range(6)
                    ]
        assert labels == {"A", "B", "C"}


# ------------------------------------------------------------------------- (b) forged ids, DELETE
async def _post(http: httpx.AsyncClient, port: int, body: Any, session: str) -> httpx.Response:
    return await http.post(f"http://127.0.0.1:{port}/mcp", json=body, headers={**LEGACY, "mcp-session-id": session})


async def _open(http: httpx.AsyncClient, port: int) -> str:
    response = await http.post(f"http://127.0.0.1:{port}/mcp", json=INITIALIZE, headers=ACCEPT)
    assert response.status_code == 200
    return response.headers["mcp-session-id"]


def _is_not_found(response: httpx.Response) -> bool:
    if response.status_code != 404:
        return False
    body = response.json()
    return body["jsonrpc"] == "2.0" and body["id"] is None and body["error"]["code"] == -32600


async def test_forged_tampered_foreign_and_expired_ids_are_404(redis_url: str) -> None:
    key = secrets.token_hex(32)
    async with replicas(2, keys=[key], redis_url=redis_url) as (ports, _apps), httpx.AsyncClient(timeout=10) as http:
        session = await _open(http, ports[0])
        assert (await _post(http, ports[1], LIST_TOOLS, session)).status_code == 200
        flipped = session[:-3] + ("A" if session[-3] != "A" else "B") + session[-2:]
        claims = SessionClaims("s" * 24, "2025-11-25", INITIALIZE["params"], None, time.time())
        foreign = SessionSealer([secrets.token_hex(32).encode()], ttl=600).seal(claims)
        stale = SessionSealer([key.encode()], ttl=600, clock=lambda: 1_000_000.0)  # an id from long ago
        expired = stale.seal(stale.opening_claims(json.dumps(INITIALIZE).encode(), None))
        for forged in ("not-a-session", session + "x", flipped, foreign, expired):
            assert _is_not_found(await _post(http, ports[1], LIST_TOOLS, forged)), forged


async def test_delete_on_one_replica_ends_the_session_on_all(redis_url: str) -> None:
    async with replicas(3, redis_url=redis_url) as (ports, apps), httpx.AsyncClient(timeout=10) as http:
        session = await _open(http, ports[0])
        assert (await _post(http, ports[1], LIST_TOOLS, session)).status_code == 200  # B adopts it
        manager = apps[1]._manager
        assert manager is not None
        assert session in manager._server_instances
        deleted = await http.delete(f"http://127.0.0.1:{ports[0]}/mcp", headers={**LEGACY, "mcp-session-id": session})
        assert deleted.status_code == 200
        # C never saw the session: Redis says it was revoked.
        assert _is_not_found(await _post(http, ports[2], LIST_TOOLS, session))
        assert _is_not_found(await _post(http, ports[0], LIST_TOOLS, session))
        # B held a copy: the fan-out closes it.
        await _wait_for(lambda: session not in manager._server_instances)
        assert _is_not_found(await _post(http, ports[1], LIST_TOOLS, session))


async def test_without_redis_delete_ends_the_session_on_its_replica_only() -> None:
    async with replicas(2, redis_url=None) as (ports, _apps), httpx.AsyncClient(timeout=10) as http:
        session = await _open(http, ports[0])
        deleted = await http.delete(f"http://127.0.0.1:{ports[0]}/mcp", headers={**LEGACY, "mcp-session-id": session})
        assert deleted.status_code == 200
        assert _is_not_found(await _post(http, ports[0], LIST_TOOLS, session))
        # Documented: the other replica still accepts the id until its TTL runs out.
        assert (await _post(http, ports[1], LIST_TOOLS, session)).status_code == 200


async def test_without_shared_keys_sessions_stay_on_their_replica(redis_url: str) -> None:
    async with AsyncExitStack() as stack:
        name = f"replicas-{secrets.token_hex(4)}"
        apps = [build_plane(name, label, keys=[], redis_url=redis_url).http_app() for label in "AB"]
        ports = [await stack.enter_async_context(serve(app)) for app in apps]
        async with httpx.AsyncClient(timeout=10) as http:
            session = await _open(http, ports[0])
            assert (await _post(http, ports[0], LIST_TOOLS, session)).status_code == 200
            assert _is_not_found(await _post(http, ports[1], LIST_TOOLS, session))


async def test_an_idle_session_is_dropped_and_adopted_again_unless_its_get_stream_is_open() -> None:
    """What an idle session costs (``sessions.idle_timeout``): nothing but its id, which the replica
    that dropped it adopts again on the next request, as any replica would; DELETE still ends it."""
    plane = build_plane("idle", "A", keys=[secrets.token_hex(32)], redis_url=None, idle_timeout=0.5)
    app = plane.http_app()
    async with serve(app) as port, httpx.AsyncClient(timeout=10) as http:
        manager = app._manager
        assert manager is not None
        streaming, idle = await _open(http, port), await _open(http, port)
        url = f"http://127.0.0.1:{port}/mcp"
        get = {"accept": "text/event-stream", "mcp-protocol-version": "2025-11-25", "mcp-session-id": streaming}
        async with http.stream("GET", url, headers=get) as stream:
            assert stream.status_code == 200
            await _wait_for(lambda: idle not in manager._server_instances)
            # ``streaming`` went idle first, but an open GET stream holds it.
            assert streaming in manager._server_instances
            assert not manager.park(streaming)  # nor can it be dropped at once
        await _wait_for(lambda: streaming not in manager._server_instances)
        add = {"name": "add", "arguments": {"a": 2, "b": 3}}
        call = {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": add}
        for session in (streaming, idle):
            answer = await _post(http, port, call, session)
            assert answer.status_code == 200
            assert '"text":"5"' in answer.text.replace(" ", "")
            assert session in manager._server_instances
        await _wait_for(lambda: idle not in manager._server_instances)
        assert (await http.delete(url, headers={**LEGACY, "mcp-session-id": idle})).status_code == 200
        assert _is_not_found(await _post(http, port, LIST_TOOLS, idle))
        assert (await _post(http, port, LIST_TOOLS, streaming)).status_code == 200


def _request_scopes(port: int) -> int:
    """HTTP request scopes of the server on ``port`` still alive (the tier stores the decoded
    headers in each; scopes another test left to the collector in this process do not count)."""
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, dict) and HEADERS_KEY in o and _serves(o, port))


def _serves(scope: dict[Any, Any], port: int) -> bool:
    server = scope.get("server")
    return isinstance(server, tuple) and len(server) == 2 and server[1] == port  # pyright: ignore[reportUnknownArgumentType]


async def test_an_idle_session_keeps_no_request_alive() -> None:
    """A session's server loop hands each message on and forgets the HTTP request it came in."""
    plane = build_plane("idle", "A", keys=[secrets.token_hex(32)], redis_url=None)
    app = plane.http_app()
    async with serve(app) as port:
        async with httpx.AsyncClient(timeout=10) as http:
            sessions = [await _open(http, port) for _ in range(5)]
            initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
            for session in sessions:
                assert (await _post(http, port, initialized, session)).status_code == 202
            assert (await _post(http, port, LIST_TOOLS, sessions[0])).status_code == 200
            url = f"http://127.0.0.1:{port}/mcp"
            get = {"accept": "text/event-stream", "mcp-protocol-version": "2025-11-25", "mcp-session-id": sessions[1]}
            async with http.stream("GET", url, headers=get) as stream:
                assert stream.status_code == 200
                assert _request_scopes(port) >= 1, "an open GET stream's request is alive, and counted"
        await _wait_for(lambda: _request_scopes(port) == 0)
        manager = app._manager
        assert manager is not None
        assert all(session in manager._server_instances for session in sessions)


# ------------------------------------------------------------------------- (c) the GET stream on another replica
async def test_notifications_made_on_one_replica_reach_the_get_stream_on_another(redis_url: str) -> None:
    received: list[ServerNotification] = []
    arrived = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, ResourceUpdatedNotification | ToolListChangedNotification):
            received.append(message)
            arrived.set()

    async with replicas(3, redis_url=redis_url) as (ports, apps):
        rr = RoundRobin(ports)
        async with httpx2.AsyncClient(transport=rr) as http:
            rr.pinned = 0
            with anyio.fail_after(30):
                async with Client(
                    streamable_http_client(f"http://127.0.0.1:{ports[0]}/mcp", http_client=http),
                    mode="legacy",
                    message_handler=on_message,
                ) as client:
                    manager = apps[0]._manager
                    assert manager is not None
                    await _wait_for(lambda: any(t.has_standalone_stream for t in manager._server_instances.values()))  # type: ignore[attr-defined]
                    assert rr.log[-1][1] == "GET" or any(m == "GET" for _, m, _ in rr.log)
                    rr.pinned = 1  # B: no GET stream for this session there
                    assert _text(await client.call_tool("touch", {"uri": "notes://today"})) == "B"
                    with anyio.fail_after(10):
                        await arrived.wait()
                    assert isinstance(received[0], ResourceUpdatedNotification)
                    assert received[0].params.uri == "notes://today"
                    arrived = anyio.Event()
                    rr.pinned = 2
                    assert _text(await client.call_tool("announce", {})) == "C"  # plane-wide, from C
                    with anyio.fail_after(10):
                        await arrived.wait()
                    assert isinstance(received[1], ToolListChangedNotification)
                    rr.pinned = 0
        assert [index for index, method, _ in rr.log if method == "GET"] == [0]


# ------------------------------------------------------------------------- (d) 2026-07-28 input_required rounds
async def _elicit_name(context: Any, params: ElicitRequestParams) -> ElicitResult:
    return ElicitResult(action="accept", content={"name": "Ada"})


async def test_an_input_required_round_started_on_one_replica_completes_on_another(redis_url: str) -> None:
    async with replicas(2, redis_url=redis_url) as (ports, _apps):
        rr = RoundRobin(ports)
        async with httpx2.AsyncClient(transport=rr) as http:
            with anyio.fail_after(30):
                async with Client(
                    streamable_http_client(f"http://127.0.0.1:{ports[0]}/mcp", http_client=http),
                    mode="2026-07-28",
                    elicitation_callback=_elicit_name,
                ) as client:
                    rr.pinned = 0
                    await client.list_tools()
                    rr.pinned = None
                    rr.turn = 0
                    result = await client.call_tool("ask_name", {})
        assert _text(result) == "Hello, Ada! (answered on B)"
        assert rr.served("tools/call")[-2:] == [0, 1]


async def test_without_shared_keys_the_second_round_is_refused() -> None:
    async with AsyncExitStack() as stack:
        name = f"replicas-{secrets.token_hex(4)}"
        apps = [build_plane(name, label, keys=[], redis_url=None).http_app() for label in "AB"]
        ports = [await stack.enter_async_context(serve(app)) for app in apps]
        rr = RoundRobin(ports)
        async with httpx2.AsyncClient(transport=rr) as http:
            with anyio.fail_after(30):
                async with Client(
                    streamable_http_client(f"http://127.0.0.1:{ports[0]}/mcp", http_client=http),
                    mode="2026-07-28",
                    elicitation_callback=_elicit_name,
                ) as client:
                    rr.pinned = None
                    rr.turn = 0
                    with pytest.raises(MCPError, match="Invalid or expired requestState"):
                        await client.call_tool("ask_name", {})


# ------------------------------------------------------------------------- (e) subscriptions/listen across replicas
async def test_a_listen_stream_on_one_replica_gets_changes_made_on_another(redis_url: str) -> None:
    async with replicas(3, redis_url=redis_url) as (ports, _apps):
        rr = RoundRobin(ports)
        async with httpx2.AsyncClient(transport=rr) as http:
            with anyio.fail_after(30):
                async with Client(
                    streamable_http_client(f"http://127.0.0.1:{ports[0]}/mcp", http_client=http), mode="2026-07-28"
                ) as client:
                    rr.pinned = 0
                    async with client.listen(tools_list_changed=True) as subscription:
                        rr.pinned = 1
                        assert _text(await client.call_tool("change_tools", {})) == "B"  # ctx.notify_tools_changed()
                        assert isinstance(await subscription.__anext__(), ToolsListChanged)
                        rr.pinned = 2
                        assert _text(await client.call_tool("announce", {})) == "C"  # plane.notify_list_changed()
                        assert isinstance(await subscription.__anext__(), ToolsListChanged)
                        rr.pinned = 0
        assert rr.served("subscriptions/listen") == [0]


# ------------------------------------------------------------------------- key rotation, Redis off the hot path
async def test_replicas_in_the_middle_of_a_key_rotation_continue_each_other(redis_url: str) -> None:
    old, new = secrets.token_hex(32), secrets.token_hex(32)
    async with replicas(rings=[[old], [new, old]], redis_url=redis_url) as (ports, _apps):
        rr = RoundRobin(ports)
        async with httpx2.AsyncClient(transport=rr) as http:
            with anyio.fail_after(30):
                rr.pinned = 0  # sealed with the old key, continued where the new one seals
                async with Client(
                    streamable_http_client(f"http://127.0.0.1:{ports[0]}/mcp", http_client=http), mode="legacy"
                ) as client:
                    rr.pinned = 1
                    assert _text(await client.call_tool("where", {})) == "B"
                rr.pinned = None
                rr.turn = 0
                async with Client(
                    streamable_http_client(f"http://127.0.0.1:{ports[0]}/mcp", http_client=http),
                    mode="2026-07-28",
                    elicitation_callback=_elicit_name,
                ) as modern:
                    rr.turn = 0  # round 1 on A (old key seals), round 2 on B (old key still unseals)
                    assert _text(await modern.call_tool("ask_name", {})) == "Hello, Ada! (answered on B)"


async def test_an_adopted_session_needs_redis_no_more(redis_url: str) -> None:
    from mcplane.backends.redis import connect_redis
    from tests.conftest import free_port

    async with replicas(2, redis_url=redis_url) as (ports, apps), httpx.AsyncClient(timeout=10) as http:
        ready = await http.get(f"http://127.0.0.1:{ports[1]}/ready")
        assert ready.json()["checks"]["fanout"] == "ok"
        session = await _open(http, ports[0])
        call = {
            "jsonrpc": "2.0",
            "id": 3,
            "method": "tools/call",
            "params": {"name": "add", "arguments": {"a": 1, "b": 2}},
        }
        assert (await _post(http, ports[1], call, session)).status_code == 200  # B adopts: one Redis look-up
        manager = apps[1]._manager
        assert manager is not None
        dead = connect_redis(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5)
        manager.revocations.redis = dead  # from now on every Redis command on B fails
        try:
            served = apps[1].fast.served if apps[1].fast is not None else 0
            for _ in range(3):
                answer = await _post(http, ports[1], call, session)
                assert answer.status_code == 200
                assert answer.json()["result"]["structuredContent"] == {"result": 3}
            assert apps[1].fast is not None
            assert apps[1].fast.served == served + 3  # the hot path, without asking Redis
            other = await _open(http, ports[0])
            refused = await _post(http, ports[1], call, other)  # a new session must be checked: 503
            assert refused.status_code == 503
            assert refused.json()["error"]["data"] == {"code": "dependency_unavailable"}
        finally:
            await dead.aclose()


async def test_with_redis_down_sessions_continue_and_readiness_says_so() -> None:
    from tests.conftest import free_port

    dead = f"redis://127.0.0.1:{free_port()}/0"
    key = secrets.token_hex(32)
    async with replicas(2, keys=[key], redis_url=dead) as (ports, _apps), httpx.AsyncClient(timeout=10) as http:
        ready = await http.get(f"http://127.0.0.1:{ports[0]}/ready")
        assert ready.status_code == 503
        assert ready.json()["checks"]["fanout"] == "fan-out channel unreachable"
        session = await _open(http, ports[0])
        assert (await _post(http, ports[0], LIST_TOOLS, session)).status_code == 200  # opened here: no Redis needed
        refused = await _post(http, ports[1], LIST_TOOLS, session)  # adopting needs the revocation list
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
