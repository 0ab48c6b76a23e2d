"""The lean outbound path sends what the SDK client sends and hands back what the SDK path hands back.

Each test runs three times, ``lean: true`` (the default) on the raw keep-alive pool and on ``httpx``,
and ``lean: false`` (every call through the SDK client); each run after the first compares its
record with the first's.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import uvicorn
from mcp import Client

from mcplane.gateway import Gateway, pool
from mcplane.transports.http import HTTPApp, HTTPOptions
from tests.conftest import wire_error_of
from tests.gateway.conftest import PlaneServer, error_code, text_of
from tests.test_fastpath import body_of, modern_call, modern_headers, scrub

WAIT = 20.0
SESSION = "fake-session-1"
_TOOLS = ("ok", "rpc_error", "rpc_invalid", "typed_error", "sse", "garbage", "http_500", "tool_error")
_RECORDED = ("mcp-session-id", "mcp-protocol-version", "mcp-name", "mcp-method", "authorization", "x-api-key", "accept")


@pytest.fixture(params=["lean", "lean-httpx", "sdk"])
def lean(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """The lean lane on its raw pool (the default), the lean lane on ``httpx``, or the SDK client."""
    if request.param == "lean-httpx":
        monkeypatch.setattr(pool, "available", False)
    return request.param != "sdk"


PATHS = ("lean", "lean-httpx", "sdk")
"""The lean lane on its raw pool (the default), the lean lane on ``httpx``, and the SDK client."""


async def on_every_path(monkeypatch: pytest.MonkeyPatch, run: Callable[[bool], Awaitable[Any]]) -> None:
    """Run ``run(lean)`` on each of :data:`PATHS`, in this one test, and require one record."""
    records: dict[str, Any] = {}
    for path in PATHS:
        with monkeypatch.context() as patch:
            if path == "lean-httpx":
                patch.setattr(pool, "available", False)
            records[path] = await run(path != "sdk")
    assert records["lean"] == records["sdk"]
    assert records["lean-httpx"] == records["sdk"]


# ----------------------------------------------------------------- a scripted 2025-11-25 upstream
class Fake:
    """A raw ASGI upstream (2025-11-25, one session) that records every ``tools/call`` it gets."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.clients: list[Any] = []
        """The client address (one per connection) of each ``tools/call``."""
        self.listed = 0
        """``tools/list`` requests answered."""
        self.mismatched: int | None = None
        """``listed`` when ``stale_schema`` first answered -32020 (it does until the next listing)."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] != "POST":
            status = 200 if scope["method"] == "DELETE" else 405
            await send({"type": "http.response.start", "status": status, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        body = b""
        while True:
            event = await receive()
            body += event.get("body", b"")
            if not event.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        message = json.loads(body)
        if message.get("method") == "tools/call":
            self.clients.append(tuple(scope["client"]))
        status, content_type, payload = self.reply(message, headers)
        extra = [(b"mcp-session-id", SESSION.encode())]
        await send(
            {"type": "http.response.start", "status": status, "headers": [(b"content-type", content_type), *extra]}
        )
        await send({"type": "http.response.body", "body": payload})

    def reply(self, message: dict[str, Any], headers: dict[str, str]) -> tuple[int, bytes, bytes]:
        rid = message.get("id")
        method = message.get("method")

        modern = (message.get("params") or {}).get("_meta", {}).get("io.modelcontextprotocol/protocolVersion")

        def answer(key: str, value: Any) -> tuple[int, bytes, bytes]:
            if modern and key == "result":  # the 2026-07-28 result envelope
                value = {"resultType": "complete", **value}
                if method == "tools/list":
                    value |= {"ttlMs": 0, "cacheScope": "private"}
            return 200, b"application/json", json.dumps({"jsonrpc": "2.0", "id": rid, key: value}).encode()

        if rid is None:
            return 202, b"application/json", b""
        if method == "initialize":
            info = {"name": "fake", "version": "0"}
            return answer(
                "result", {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}}, "serverInfo": info}
            )
        if method == "server/discover":
            info = {"name": "fake", "version": "0"}
            result = {"supportedVersions": ["2026-07-28"], "capabilities": {"tools": {}}, "serverInfo": info}
            return answer("result", result)
        if method == "tools/list":
            self.listed += 1
            tools = [{"name": name, "inputSchema": {"type": "object"}} for name in (*_TOOLS, "stale_schema")]
            return answer("result", {"tools": tools})
        if method != "tools/call":
            return answer("result", {})
        self.calls.append(
            {
                "headers": {key: headers.get(key) for key in _RECORDED},
                "body": _without_clock({key: value for key, value in message.items() if key != "id"}),
                "id_type": type(rid).__name__,
            }
        )
        name = message["params"]["name"]
        if name == "stale_schema" and (self.mismatched is None or self.listed <= self.mismatched):
            if self.mismatched is None:  # the caller's copy of the schema is stale until it lists again
                self.mismatched = self.listed
            return answer("error", {"code": -32020, "message": "Mcp-Param header mismatch"})
        if name == "rpc_error":  # a server's own failure code
            return answer("error", {"code": -32050, "message": "bad thing", "data": {"why": 1}})
        if name == "rpc_invalid":  # a protocol error about the request: the caller's to act on
            return answer("error", {"code": -32602, "message": "bad params", "data": {"why": 2}})
        if name == "typed_error":
            error = {"code": "rate_limited", "message": "slow down", "retryable": True, "retry_after_ms": 500}
            return answer("error", {"code": -32029, "message": "slow down", "data": error})
        if name == "tool_error":
            return answer("result", {"content": [{"type": "text", "text": "no"}], "isError": True})
        if name == "garbage":
            return 200, b"application/json", b'{"hello": "world"}'
        if name == "http_500":
            return 500, b"text/plain", b"oops"
        result = {"content": [{"type": "text", "text": f"fine {name}"}], "structuredContent": {"n": 1}}
        if name == "sse":
            events = [
                b"id: 1\r\ndata: \r\nretry: 1000\r\n\r\n",
                b'event: message\r\ndata: {"jsonrpc":"2.0","method":"notifications/message",'
                b'"params":{"level":"info","data":"x"}}\r\n\r\n',
                b"id: 2\r\nevent: message\r\ndata: "
                + json.dumps({"jsonrpc": "2.0", "id": rid, "result": result}).encode()
                + b"\r\n\r\n",
            ]
            return 200, b"text/event-stream", b"".join(events)
        return answer("result", result)


def _without_clock(body: dict[str, Any]) -> dict[str, Any]:
    """The request with its remaining time (which differs by the milliseconds spent) only checked for."""
    meta = body["params"].get("_meta", {})
    if "mcplane/timeout_ms" in meta:
        assert 0 < meta["mcplane/timeout_ms"] <= 20_000
        meta["mcplane/timeout_ms"] = "set"
    return body


@asynccontextmanager
async def fake_upstream() -> AsyncGenerator[tuple[str, Fake]]:
    fake = Fake()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = uvicorn.Server(uvicorn.Config(fake, log_level="warning", lifespan="off"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        try:
            yield f"http://127.0.0.1:{sock.getsockname()[1]}/mcp", fake
        finally:
            server.should_exit = True
    sock.close()


async def test_a_scripted_upstream_sees_the_same_requests_and_callers_the_same_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await on_every_path(monkeypatch, _scripted)


async def _scripted(lean: bool) -> Any:
    async with fake_upstream() as (url, fake):
        upstream = {
            "endpoints": [{"url": url}],
            "mode": "legacy",
            "retries": {"attempts": 1},
            "breaker": {"failures": 100},
            "headers": {"X-Api-Key": "k1"},  # the upstream's credentials
            "identity": "forward",  # and the caller's token on each of its calls
            "lean": lean,
        }
        plane = Gateway.from_config({"server": {"default_timeout": "20s"}, "upstreams": {"fake": upstream}})
        app = HTTPApp(plane, HTTPOptions())
        answers: dict[str, Any] = {}
        async with app.running():
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
                for tool in _TOOLS:
                    name = f"fake__{tool}"
                    headers = {**modern_headers(name), "authorization": f"Bearer token-{tool}"}
                    response = await http.post("/mcp", json=modern_call(name, {"q": tool}), headers=headers)
                    answers[tool] = (response.status_code, scrub(body_of(response)))
            (endpoint,) = Gateway.provider_of(plane).upstreams["fake"].endpoints
            lane = endpoint.lean
            served = lane.served if lane is not None else None
            raw = lane is not None and lane.pool is not None
    assert served == (3 if lean else None)
    assert raw == (lean and pool.available)  # the results (ok, sse, tool_error); errors are raised
    assert answers["ok"][1]["result"]["structuredContent"] == {"n": 1}
    assert answers["sse"][1]["result"]["content"][0]["text"] == "fine sse"
    assert error_code_of(answers["rpc_error"]) == "upstream_error"
    invalid = answers["rpc_invalid"][1]["error"]  # relayed as the upstream said it, a JSON-RPC error
    assert (invalid["code"], invalid["message"], invalid["data"]) == (-32602, "bad params", {"why": 2})
    assert error_code_of(answers["typed_error"]) == "rate_limited"
    assert error_code_of(answers["garbage"]) == "upstream_error"
    assert error_code_of(answers["http_500"]) == "upstream_error"
    assert answers["tool_error"][1]["result"]["isError"] is True
    calls = fake.calls
    assert len(calls) == len(_TOOLS)
    first = calls[0]["headers"]
    assert first["mcp-session-id"] == SESSION
    assert first["authorization"] == "Bearer token-ok"
    assert first["x-api-key"] == "k1"
    assert first["mcp-protocol-version"] == "2025-11-25"
    return (answers, [{**call, "id_type": None} for call in calls])


async def test_a_header_mismatch_re_lists_the_tool_and_resends_once(lean: bool) -> None:
    """A 2026-07-28 upstream that says the request's headers do not match the tool's schema (-32020):
    the link's copy of the listing is stale, so it is fetched again and the call resent, once."""
    async with fake_upstream() as (url, fake):
        upstream = {"endpoints": [{"url": url}], "mode": "2026-07-28", "retries": {"attempts": 1}, "lean": lean}
        plane = Gateway.from_config({"server": {"default_timeout": "20s"}, "upstreams": {"fake": upstream}})
        async with Client(plane.sdk, mode="2026-07-28") as client:
            listed = fake.listed
            result = await client.call_tool("fake__stale_schema", {})
            assert text_of(result) == "fine stale_schema"
            assert fake.listed == listed + 1
    assert [call["body"]["params"]["name"] for call in fake.calls] == ["stale_schema", "stale_schema"]


def error_code_of(answer: tuple[int, Any]) -> str | None:
    result = answer[1]["result"]
    return wire_error_of(result)["code"] if result.get("isError") else None


# ----------------------------------------------------------------- a real mcplane upstream, both eras
def _real(server: PlaneServer, mode: str, lean: bool) -> Any:
    upstream = {"endpoints": [{"url": server.url}], "mode": mode, "lean": lean, "retries": {"attempts": 1}}
    return Gateway.from_config({"server": {"default_timeout": "20s"}, "upstreams": {"up": upstream}})


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_a_real_upstream_answers_alike_on_both_paths(
    plane_http: PlaneServer, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await on_every_path(monkeypatch, lambda lean: _real_record(plane_http, mode, lean))


async def _real_record(plane_http: PlaneServer, mode: str, lean: bool) -> Any:
    plane = _real(plane_http, mode, lean)
    async with Client(plane.sdk, mode="2026-07-28") as client:
        record: list[Any] = []
        for name, arguments in [
            ("up__add", {"a": 2, "b": 3}),
            ("up__add", {"a": "two", "b": 3}),  # invalid arguments
            ("up__hop", {"names": [], "url": plane_http.url, "record": "unused"}),  # the tool fails upstream
            ("up__era", {}),
            ("up__traceparent", {}),
            ("up__add", {"a": 2**63, "b": 2**63}),  # a result beyond 64 bits, exact across the hop
        ]:
            result = await client.call_tool(name, arguments)
            record.append((result.is_error, scrub(result.structured_content), error_code(result)))
        left = await client.call_tool("up__remaining_ms", {}, meta={"mcplane/timeout_ms": 4000})
        assert 0 < int(text_of(left)) <= 4000  # the caller's deadline crossed the hop
        late = await client.call_tool("up__hang_read", {}, meta={"mcplane/timeout_ms": 300})
        record.append(error_code(late))
        (endpoint,) = Gateway.provider_of(plane).upstreams["up"].endpoints
        lane = endpoint.lean
        assert (lane is not None and lane.served >= 4) if lean else lane is None
    assert record[0][1] == {"result": 5}
    assert record[1][2] == "invalid_arguments"
    assert record[2][0] is True
    assert record[5][1] == {"result": 2**64}
    assert type(record[5][1]["result"]) is int
    assert record[-1] == "deadline_exceeded"
    return record


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_a_cancelled_call_is_cancelled_upstream(
    plane_http: PlaneServer, lean: bool, mode: str, tmp_path: Path
) -> None:
    plane = _real(plane_http, mode, lean)
    marker = tmp_path / "cancelled"
    async with Client(plane.sdk, mode="2026-07-28") as client:
        assert text_of(await client.call_tool("up__add", {"a": 1, "b": 1})) == "2"
        with anyio.move_on_after(1.0):  # the caller gives up on a call that never answers
            await client.call_tool("up__wait_cancelled", {"marker": str(marker)})
        with anyio.fail_after(WAIT):
            while not marker.exists():  # noqa: ASYNC110 - polling the upstream's marker under the bound above
                await anyio.sleep(0.05)
        assert text_of(await client.call_tool("up__add", {"a": 2, "b": 2})) == "4"  # the upstream serves on
    assert marker.read_text() == "cancelled"
