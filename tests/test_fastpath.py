"""The hot path answers exactly what the SDK path answers, and only when it may."""

from __future__ import annotations

from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import orjson
import pytest
from pydantic import BaseModel
from starlette.types import Message

from mcplane import Context, Plane
from mcplane.transports.http import HTTPApp, HTTPOptions

MODERN = "2026-07-28"
LEGACY = "2025-11-25"


class Point(BaseModel):
    x: int
    y: int


def make_plane() -> Plane:
    plane = Plane("fast")

    @plane.tool()
    async def echo(text: str) -> str:
        return text

    @plane.tool()
    def add(a: int, b: int) -> int:
        return a + b

    @plane.tool()
    async def point(x: int) -> Point:
        return Point(x=x, y=-x)

    @plane.tool()
    async def boom() -> str:
        raise RuntimeError("secret-token-123")

    @plane.tool()
    async def with_ctx(ctx: Context) -> str:
        return ctx.principal.subject

    return plane


@pytest.fixture(params=[True, False], ids=["fast", "sdk"])
def fast(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@asynccontextmanager
async def serving(fast: bool) -> AsyncIterator[tuple[httpx.AsyncClient, HTTPApp]]:
    """The HTTP tier in-process (its task group lives in the test's own task)."""
    app = HTTPApp(make_plane(), HTTPOptions(fast_path=fast))
    async with app.running():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            yield http, app


def modern_call(name: str, arguments: dict[str, Any], *, request_id: int = 1, **meta: Any) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {
            "name": name,
            "arguments": arguments,
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": MODERN,
                "io.modelcontextprotocol/clientCapabilities": {},
                **meta,
            },
        },
    }


def modern_headers(name: str, method: str = "tools/call") -> dict[str, str]:
    return {
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": MODERN,
        "mcp-method": method,
        "mcp-name": name,
    }


def body_of(response: httpx.Response) -> dict[str, Any]:
    if response.headers["content-type"].startswith("text/event-stream"):
        data = [line[5:].strip() for line in response.text.splitlines() if line.startswith("data:")]
        data = [d for d in data if d]
        return orjson.loads(data[-1])
    return orjson.loads(response.content)


def scrub(value: Any) -> Any:
    """Drop the per-call correlation id so two answers can be compared."""
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items() if k != "correlation_id"}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    if isinstance(value, str) and value.startswith('{"error"'):
        return scrub(orjson.loads(value))
    return value


CASES = [
    ("echo", {"text": "hé ☃"}),
    ("add", {"a": 2, "b": 3}),
    ("point", {"x": 4}),
    ("boom", {}),
    ("add", {"a": "x"}),
    ("echo", {}),
]


@dataclass(frozen=True)
class Answer:
    """What one path put on the wire for a call, and how many calls the hot path served."""

    status: int
    text: str
    body: dict[str, Any]
    served: int | None
    """``None``: the hot path was off."""


async def answer(fast: bool, name: str, arguments: dict[str, Any]) -> Answer:
    async with serving(fast) as (http, app):
        response = await http.post("/mcp", json=modern_call(name, arguments), headers=modern_headers(name))
        served = app.fast.served if app.fast is not None else None
        assert app.fast is not None or app.options.fast_path is False
        return Answer(response.status_code, response.text, scrub(body_of(response)), served)


@pytest.fixture(params=CASES, ids=[f"{name}-{i}" for i, (name, _) in enumerate(CASES)])
async def answers(request: pytest.FixtureRequest) -> dict[bool, Answer]:
    """Both paths' answers to one case, keyed by whether the hot path was on."""
    name, arguments = request.param
    return {fast: await answer(fast, name, arguments) for fast in (True, False)}


async def test_modern_answers_match_the_sdk(fast: bool, answers: dict[bool, Answer]) -> None:
    mine = answers[fast]
    assert mine.status == 200
    assert "secret-token-123" not in mine.text
    assert mine.body == answers[not fast].body
    assert mine.body["result"]["resultType"] == "complete"
    assert mine.body["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "fast"
    if fast:
        assert mine.served == 1
    else:
        assert mine.served is None


@pytest.mark.parametrize(
    "meta",
    [{"progressToken": "p1"}, {"io.modelcontextprotocol/logLevel": "info"}],
    ids=["progress", "log-level"],
)
async def test_modern_requests_with_extras_use_the_sdk(fast: bool, meta: dict[str, Any]) -> None:
    async with serving(fast) as (http, app):
        response = await http.post(
            "/mcp", json=modern_call("echo", {"text": "a"}, **meta), headers=modern_headers("echo")
        )
        assert body_of(response)["result"]["structuredContent"] == {"result": "a"}
        assert app.fast is None or app.fast.served == 0


async def test_tools_asking_for_the_context_use_the_sdk(fast: bool) -> None:
    async with serving(fast) as (http, app):
        response = await http.post("/mcp", json=modern_call("with_ctx", {}), headers=modern_headers("with_ctx"))
        assert body_of(response)["result"]["structuredContent"] == {"result": "anonymous"}
        assert app.fast is None or app.fast.served == 0


async def test_header_mismatch_is_the_sdks_rejection(fast: bool) -> None:
    async with serving(fast) as (http, app):
        response = await http.post("/mcp", json=modern_call("echo", {"text": "a"}), headers=modern_headers("add"))
        assert response.status_code == 400
        assert body_of(response)["error"]["code"] == -32020
        assert app.fast is None or app.fast.served == 0


@pytest.mark.parametrize(
    "extra",
    [[("mcp-method", "tools/call")], [("Mcp-Name", "echo")], [("x-other", "1"), ("x-other", "2")]],
    ids=["method-twice", "name-twice-other-case", "other-header-twice"],
)
async def test_a_repeated_routing_header_is_the_sdks_to_answer(fast: bool, extra: list[tuple[str, str]]) -> None:
    """Only a repeated routing header sends the call to the SDK (another repeated header does not)."""
    routing = "x-other" not in dict(extra)
    async with serving(fast) as (http, app):
        headers = [*modern_headers("echo").items(), *extra]
        response = await http.post("/mcp", content=orjson.dumps(modern_call("echo", {"text": "a"})), headers=headers)
        if routing:
            assert response.status_code == 400
            assert "error" in body_of(response)
        else:
            assert body_of(response)["result"]["structuredContent"] == {"result": "a"}
        assert app.fast is None or app.fast.served == (0 if routing else 1)


async def _open_session(http: httpx.AsyncClient) -> str:
    init = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    response = await http.post("/mcp", json=init, headers=headers)
    session = response.headers["mcp-session-id"]
    headers |= {"mcp-session-id": session, "mcp-protocol-version": LEGACY}
    note = await http.post("/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
    assert note.status_code == 202
    return session


def legacy_headers(session: str) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
        "mcp-session-id": session,
        "mcp-protocol-version": LEGACY,
    }


async def test_legacy_session_calls_match_the_sdk(fast: bool) -> None:
    async with serving(fast) as (http, app):
        session = await _open_session(http)
        call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "point", "arguments": {"x": 2}}}
        response = await http.post("/mcp", json=call, headers=legacy_headers(session))
        body = body_of(response)
        assert body == {
            "jsonrpc": "2.0",
            "id": 7,
            "result": {
                "content": [{"type": "text", "text": '{\n  "x": 2,\n  "y": -2\n}'}],
                "structuredContent": {"x": 2, "y": -2},
                "isError": False,
            },
        }
        assert app.fast is None or app.fast.served == 1


async def test_legacy_call_before_initialized_goes_to_the_sdk(fast: bool) -> None:
    async with serving(fast) as (http, app):
        init = {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
        }
        headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
        session = (await http.post("/mcp", json=init, headers=headers)).headers["mcp-session-id"]
        call = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": "x"}},
        }
        await http.post("/mcp", json=call, headers=legacy_headers(session))
        assert app.fast is None or app.fast.served == 0


async def test_unknown_session_is_not_found(fast: bool) -> None:
    async with serving(fast) as (http, app):
        call = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": "x"}},
        }
        response = await http.post("/mcp", json=call, headers=legacy_headers("nope"))
        assert response.status_code == 404
        assert app.fast is None or app.fast.served == 0


@dataclass
class Gate:
    """A tool that waits until released; tells when it started and whether it was cancelled."""

    started: anyio.Event
    release: anyio.Event
    cancelled: list[bool]


def gated_plane() -> tuple[Plane, Gate]:
    plane = make_plane()
    gate = Gate(anyio.Event(), anyio.Event(), [])

    @plane.tool()
    async def wait(text: str) -> str:
        gate.started.set()
        try:
            await gate.release.wait()
        except anyio.get_cancelled_exc_class():
            gate.cancelled.append(True)
            raise
        return text

    return plane, gate


def _asgi_scope(headers: dict[str, str]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/mcp",
        "raw_path": b"/mcp",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1"), *((k.encode(), v.encode()) for k, v in headers.items())],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
        "state": {},
    }


async def test_a_modern_call_whose_client_goes_away_is_cancelled_and_not_answered() -> None:
    plane, gate = gated_plane()
    app = HTTPApp(plane, HTTPOptions())
    sent: list[Message] = []
    reads = 0

    async def receive() -> dict[str, Any]:
        nonlocal reads
        reads += 1
        if reads == 1:
            return {
                "type": "http.request",
                "body": orjson.dumps(modern_call("wait", {"text": "x"})),
                "more_body": False,
            }
        await gate.started.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    async with app.running():
        with anyio.fail_after(10):
            await app(_asgi_scope(modern_headers("wait")), receive, send)
        assert app.fast is not None
        assert app.fast.served == 1
    assert gate.cancelled == [True]
    assert sent == []


async def test_a_modern_call_that_never_waits_watches_nothing() -> None:
    """A call that ends without suspending is answered with no watcher on ``receive``."""
    app = HTTPApp(make_plane(), HTTPOptions())
    sent: list[Message] = []
    reads = 0

    async def read(message: dict[str, Any]) -> dict[str, Any]:
        return message

    def receive() -> Coroutine[Any, Any, dict[str, Any]]:
        nonlocal reads  # counted when asked, whether or not the answer is ever awaited
        reads += 1
        if reads == 1:
            body = orjson.dumps(modern_call("echo", {"text": "x"}))
            return read({"type": "http.request", "body": body, "more_body": False})
        return read({"type": "http.disconnect"})

    async def send(message: Message) -> None:
        sent.append(message)

    async with app.running():
        await app(_asgi_scope(modern_headers("echo")), receive, send)
        assert app.fast is not None
        assert app.fast.served == 1
    assert reads == 1
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert orjson.loads(sent[1]["body"])["result"]["structuredContent"] == {"result": "x"}


async def test_a_modern_call_still_answers_when_the_client_stays() -> None:
    plane, gate = gated_plane()
    app = HTTPApp(plane, HTTPOptions())
    async with app.running():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            responses: list[httpx.Response] = []

            async def call() -> None:
                responses.append(
                    await http.post("/mcp", json=modern_call("wait", {"text": "y"}), headers=modern_headers("wait"))
                )

            with anyio.fail_after(10):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(call)
                    await gate.started.wait()
                    gate.release.set()
        assert app.fast is not None
        assert app.fast.served == 1
    assert body_of(responses[0])["result"]["structuredContent"] == {"result": "y"}
    assert gate.cancelled == []


async def test_a_legacy_call_cancelled_by_its_client_answers_request_cancelled(fast: bool) -> None:
    plane, gate = gated_plane()
    app = HTTPApp(plane, HTTPOptions(fast_path=fast))
    async with app.running():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            session = await _open_session(http)
            call = {
                "jsonrpc": "2.0",
                "id": 9,
                "method": "tools/call",
                "params": {"name": "wait", "arguments": {"text": "z"}},
            }
            cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 9}}
            responses: list[httpx.Response] = []

            async def post() -> None:
                responses.append(await http.post("/mcp", json=call, headers=legacy_headers(session)))

            with anyio.fail_after(10):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(post)
                    await gate.started.wait()
                    acknowledged = await http.post("/mcp", json=cancel, headers=legacy_headers(session))
                    assert acknowledged.status_code == 202
            assert app.fast is None or (app.fast.served == 1 and app.fast_calls == {})
            assert gate.cancelled == [True]
            if fast:  # the SDK's own transport answers nothing on the POST of a cancelled request
                body = body_of(responses[0])
                assert body["error"]["code"] == -32800
