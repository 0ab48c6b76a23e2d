"""Faults of real upstream processes: a stdio child killed mid-call, an upstream answering garbage,
an upstream restarted on its port, a slow chain of hops under one deadline. Each answers a stable
code, and the gateway keeps serving other calls."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import uvicorn
from mcp import Client

from mcplane import Plane
from mcplane.gateway import Gateway
from tests.conftest import REPO_ROOT, error_of
from tests.gateway.conftest import UPSTREAM_APP, PlaneServer, error_code, text_of

WAIT = 20.0


def _stdio(**options: Any) -> dict[str, Any]:
    command = {
        "command": sys.executable,
        "args": ["-m", "mcplane.cli", "run", str(UPSTREAM_APP)],
        "cwd": str(REPO_ROOT),
    }
    return {"endpoints": [command], **options}


def _plane(upstreams: dict[str, Any]) -> Plane:
    plane = Gateway.from_config({"server": {"default_timeout": "20s"}, "upstreams": upstreams})

    @plane.tool()
    def ping() -> str:  # a local tool: the gateway itself keeps serving
        return "pong"

    return plane


async def _until(condition: Any, what: str) -> None:
    """Poll ``condition()`` (sync or async) until true, within ``WAIT`` seconds."""
    with anyio.fail_after(WAIT):
        while True:
            value = condition()
            if not isinstance(value, bool):
                value = await value
            if value:
                return
            await anyio.sleep(0.05)  # polling under the bound above: nothing to wait on but the condition


def _process_state(pid: int) -> str | None:
    """The state letter of ``pid`` (``Z`` for a zombie), ``None`` once it is gone (reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def _zombie_children() -> set[int]:
    mine = str(os.getpid())
    zombies: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if fields[1] == mine and fields[0] == "Z":
            zombies.add(int(entry.name))
    return zombies


# ----------------------------------------------------------------- a stdio child killed mid-call
async def test_a_stdio_upstream_killed_mid_call_fails_the_call_and_is_respawned_without_zombies() -> None:
    plane = _plane({"up": _stdio(restart={"initial": "100ms", "max": "1s"}, health_check={"interval": "60s"})})
    endpoint = Gateway.provider_of(plane).upstreams["up"].endpoints[0]
    zombies_before = _zombie_children()
    async with Client(plane.sdk, mode="legacy") as client:
        pid = int(text_of(await client.call_tool("up__pid", {})))
        assert _process_state(pid) not in (None, "Z")
        answers: list[Any] = []

        async def slow_call() -> None:  # not read-only: never retried
            answers.append(await client.call_tool("up__hang_write", {}, meta={"mcplane/timeout_ms": 15_000}))

        async with anyio.create_task_group() as tg:
            tg.start_soon(slow_call)

            async def running() -> bool:
                return text_of(await client.call_tool("up__attempts_of", {"name": "hang_write"})) == "1"

            await _until(running, "the slow call reached the upstream")
            os.kill(pid, signal.SIGKILL)
        (failed,) = answers
        assert error_code(failed) == "dependency_unavailable"  # at once, not at the 15 s deadline
        assert "Traceback" not in text_of(failed)
        assert text_of(await client.call_tool("ping", {})) == "pong"

        await _until(lambda: _process_state(pid) is None, "the killed child was reaped")
        await _until(lambda: endpoint.connections == 2 and endpoint.connected, "the child was respawned")
        new_pid = int(text_of(await client.call_tool("up__pid", {})))
        assert new_pid != pid
        assert text_of(await client.call_tool("up__add", {"a": 2, "b": 3})) == "5"
        assert _process_state(new_pid) not in (None, "Z")
    await _until(lambda: _process_state(new_pid) is None, "the respawned child was stopped and reaped")
    assert not (_zombie_children() - zombies_before)


# ----------------------------------------------------------------- an upstream answering garbage
_GARBAGE_TOOLS = ("broken_json", "not_jsonrpc", "no_result", "html_502", "ok")


def _garbage_reply(path: str, message: dict[str, Any]) -> tuple[int, bytes, bytes]:
    """(status, content type, body) for one JSON-RPC message POSTed to ``path``."""
    rid = message.get("id")
    method = message.get("method")

    def ok(result: dict[str, Any]) -> tuple[int, bytes, bytes]:
        return 200, b"application/json", json.dumps({"jsonrpc": "2.0", "id": rid, "result": result}).encode()

    if rid is None:
        return 202, b"application/json", b""
    if method == "initialize":
        info = {"name": "garbage", "version": "0"}
        return ok({"protocolVersion": "2025-11-25", "capabilities": {"tools": {}}, "serverInfo": info})
    if method == "tools/list":
        tools = [
            {"name": name, "inputSchema": {"type": "object"}, "annotations": {"readOnlyHint": True}}
            for name in _GARBAGE_TOOLS
        ]
        return ok({"tools": tools})
    if method != "tools/call":
        return ok({})
    name = message["params"]["name"]
    if name == "html_502" or path.startswith("/bad/"):
        return 502, b"text/html", b"<html><body><h1>502 Bad Gateway</h1></body></html>"
    if name == "broken_json":
        return 200, b"application/json", b'{"jsonrpc": "2.0", "id": %d, "result": {"content": [' % rid
    if name == "not_jsonrpc":
        return 200, b"application/json", b'{"hello": "world"}'
    if name == "no_result":  # a response with neither result nor error
        return 200, b"application/json", json.dumps({"jsonrpc": "2.0", "id": rid, "weird": True}).encode()
    return ok({"content": [{"type": "text", "text": "fine"}]})


async def _garbage_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A raw ASGI server that speaks just enough MCP to be connected, then answers calls with garbage."""
    if scope["method"] != "POST":  # no GET stream, nothing to DELETE
        await send({"type": "http.response.start", "status": 405, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    body = b""
    while True:
        event = await receive()
        body += event.get("body", b"")
        if not event.get("more_body"):
            break
    status, content_type, payload = _garbage_reply(scope["path"], json.loads(body))
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", content_type)]})
    await send({"type": "http.response.body", "body": payload})


@asynccontextmanager
async def _garbage_server() -> AsyncGenerator[str]:
    """The garbage app on a loopback port (listening before this yields); its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = uvicorn.Server(uvicorn.Config(_garbage_app, log_level="warning", lifespan="off"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        try:
            yield f"http://127.0.0.1:{sock.getsockname()[1]}"
        finally:
            server.should_exit = True
    sock.close()


async def test_garbage_answers_are_stable_upstream_errors_that_the_breaker_counts() -> None:
    async with _garbage_server() as base:
        garbage = {
            "endpoints": [{"url": f"{base}/mcp"}],
            "mode": "legacy",
            "retries": {"attempts": 1},
            "breaker": {"failures": 4, "cool_down": "60s"},
        }
        other = {"endpoints": [{"url": f"{base}/mcp"}], "mode": "legacy", "namespace": "other"}
        plane = _plane({"garbage": garbage, "other_upstream": other})
        async with Client(plane.sdk, mode="legacy") as client:
            assert text_of(await client.call_tool("garbage__ok", {})) == "fine"
            seen: dict[str, tuple[str | None, str]] = {}
            for tool in ("broken_json", "not_jsonrpc", "no_result", "html_502"):
                result = await client.call_tool(f"garbage__{tool}", {})
                body: Any = {"error": error_of(result)}
                seen[tool] = (error_code(result), body["error"]["details"]["reason"])
                text = text_of(result)
                assert "Traceback" not in text
                assert "validation" not in text  # no parser's exception text on the wire
            assert seen.pop("html_502") in (
                ("upstream_error", "http_error"),  # an error status with no JSON-RPC error in its body
                ("dependency_unavailable", "gateway_error"),  # ... read by the client as a proxy's page
            )
            assert seen == {tool: ("upstream_error", "invalid_response") for tool in seen}
            assert set(seen) == {"broken_json", "not_jsonrpc", "no_result"}
            # Four failures in a row opened the replica's circuit: calls are refused at once.
            assert Gateway.provider_of(plane).status()["garbage"][0]["breaker"] == "open"
            assert error_code(await client.call_tool("garbage__ok", {})) == "circuit_open"
            assert text_of(await client.call_tool("other__ok", {})) == "fine"  # another upstream serves on
            assert text_of(await client.call_tool("ping", {})) == "pong"


async def test_a_garbled_answer_is_retried_on_another_replica() -> None:
    async with _garbage_server() as base:
        pair = {
            "endpoints": [{"url": f"{base}/bad/mcp"}, {"url": f"{base}/good/mcp"}],
            "mode": "legacy",
            "retries": {"attempts": 2, "backoff": "1ms"},
            "breaker": {"failures": 1, "cool_down": "60s"},
        }
        plane = _plane({"pair": pair})
        async with Client(plane.sdk, mode="legacy") as client:
            for _ in range(2):  # round robin: one of the two calls goes to the bad replica first
                assert text_of(await client.call_tool("pair__ok", {})) == "fine"
            bad, good = Gateway.provider_of(plane).status()["pair"]
            assert bad["breaker"] == "open"
            assert good["breaker"] == "closed"


# ----------------------------------------------------------------- an upstream restarted on its port
async def test_a_restarted_http_upstream_gets_a_new_session_without_a_gateway_restart(
    plane_http: PlaneServer,
) -> None:
    upstream = {
        "endpoints": [{"url": plane_http.url}],
        "mode": "legacy",  # a session, which the restarted process does not know
        "health_check": {"interval": "60s"},  # only calls can notice the restart
        "restart": {"initial": "50ms", "max": "500ms"},
    }
    plane = _plane({"up": upstream})
    endpoint = Gateway.provider_of(plane).upstreams["up"].endpoints[0]
    async with Client(plane.sdk, mode="legacy") as client:
        assert text_of(await client.call_tool("up__add", {"a": 1, "b": 2})) == "3"
        assert endpoint.connections == 1

        plane_http.stop()
        plane_http.start()  # the same port, a new process: the old session id means nothing there
        first = await client.call_tool("up__add", {"a": 1, "b": 2})
        assert error_code(first) == "dependency_unavailable"  # not a lasting upstream_error
        assert text_of(await client.call_tool("ping", {})) == "pong"

        async def answers() -> bool:
            return not (await client.call_tool("up__add", {"a": 2, "b": 2})).is_error

        await _until(answers, "calls succeed on a new session")
        assert endpoint.connections == 2
        assert text_of(await client.call_tool("up__add", {"a": 20, "b": 22})) == "42"


# ----------------------------------------------------------------- a slow chain under one deadline
async def test_a_slow_chain_is_stopped_by_the_callers_deadline_each_hop_seeing_less(
    plane_http: PlaneServer, tmp_path: Path
) -> None:
    record = tmp_path / "hops.txt"
    plane = _plane({"up": {"endpoints": [{"url": plane_http.url}]}})
    # caller --1500 ms--> gateway --> A --mcplane.Client--> B --mcplane.Client--> C (never answers)
    arguments = {"names": ["A", "B", "C"], "url": plane_http.url, "record": str(record)}
    async with Client(plane.sdk, mode="2026-07-28") as client:
        result = await client.call_tool("up__hop", arguments, meta={"mcplane/timeout_ms": 1500})
        assert error_code(result) == "deadline_exceeded"

        def lines() -> list[str]:
            return record.read_text().splitlines() if record.exists() else []

        # Each hop's own deadline cancelled it: nothing of the chain keeps running.
        await _until(lambda: {"A cancelled", "B cancelled", "C cancelled"} <= set(lines()), "every hop ended")
        received = {name: int(value) for name, value in (line.split() for line in lines()) if value != "cancelled"}
        assert set(received) == {"A", "B", "C"}
        assert 0 < received["C"] < received["B"] < received["A"] <= 1500
        assert text_of(await client.call_tool("up__add", {"a": 1, "b": 1})) == "2"  # the upstream serves on
