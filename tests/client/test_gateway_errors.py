"""A load balancer's 502/503/504 in front of a server: a page of its own (HTML, or JSON that is
not JSON-RPC) means no server answered, so the call is retryable (``dependency_unavailable``)
and :class:`mcplane.client.Client` retries idempotent and read-only tools; a server's own
JSON-RPC error at the same statuses is its answer and is not retried.

The "load balancer" is a tiny reverse proxy (uvicorn, in this process) in front of the client
tests' ``mcplane run``: it answers the next ``tools/call`` POSTs with the failure a test sets and
forwards everything else."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2
import orjson
import pytest
import uvicorn
from mcp.shared.exceptions import MCPError

from mcplane import DependencyUnavailable
from mcplane.client import Client, RetryPolicy
from mcplane.client._connection import gateway_failure
from tests.client.conftest import FakeSleep
from tests.conftest import ServerProcess
from tests.serving import ReadyServer

HTML_502 = b"<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"
SERVER_ERROR = orjson.dumps(
    {"jsonrpc": "2.0", "id": 1, "error": {"code": -32603, "message": "internal", "data": {"detail": "boom"}}}
)


@dataclass
class Failure:
    status: int
    content_type: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict[str, str])


@dataclass
class Proxy:
    upstream: str
    port: int = 0
    failures: list[Failure] = field(default_factory=list[Failure])
    """Answers for the next ``tools/call`` POSTs, in order, instead of forwarding them."""
    failed: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["method"] == "POST" and b'"tools/call"' in body and self.failures:
            failure = self.failures.pop(0)
            self.failed += 1
            headers = [(b"content-type", failure.content_type.encode())]
            headers += [(k.encode(), v.encode()) for k, v in failure.headers.items()]
            await send({"type": "http.response.start", "status": failure.status, "headers": headers})
            await send({"type": "http.response.body", "body": failure.body})
            return
        forwarded = {
            k.decode(): v.decode() for k, v in scope["headers"] if k not in (b"host", b"content-length", b"connection")
        }
        async with httpx2.AsyncClient(timeout=30) as http:
            answer = await http.request(scope["method"], self.upstream, content=body, headers=forwarded)
        keep = {"content-type", "mcp-session-id"}
        headers = [(k.encode(), v.encode()) for k, v in answer.headers.items() if k.lower() in keep]
        await send({"type": "http.response.start", "status": answer.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": answer.content})


@asynccontextmanager
async def running_proxy(client_server: ServerProcess) -> AsyncGenerator[Proxy]:
    """(A context manager, not a fixture: uvicorn's task group must be left in the task that entered it.)"""
    proxy = Proxy(client_server.url)
    server = ReadyServer(uvicorn.Config(proxy, lifespan="off", log_level="warning"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        proxy.port = sock.getsockname()[1]
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            with anyio.fail_after(30):
                await server.ready.wait()
            try:
                yield proxy
            finally:
                server.should_exit = True


def _key() -> str:
    return uuid.uuid4().hex


async def _calls(client: Client, key: str) -> int:
    result = await client.call_tool("calls", {"key": key})
    assert result.structured_content is not None
    return result.structured_content["result"]


@pytest.mark.parametrize(
    "failure",
    [
        Failure(502, "text/html", HTML_502),
        Failure(503, "text/html", HTML_502, {"Retry-After": "0"}),
        Failure(504, "application/json", b'{"message": "Endpoint request timed out"}'),
        Failure(502, "text/plain", b""),
    ],
    ids=["502-html", "503-html", "504-json-not-jsonrpc", "502-empty"],
)
async def test_a_gateway_failure_is_retried_for_a_read_only_tool(
    client_server: ServerProcess, fake_sleep: FakeSleep, failure: Failure
) -> None:
    key = _key()
    async with running_proxy(client_server) as proxy, Client(proxy.url, sleep=fake_sleep) as client:
        proxy.failures = [failure, failure]
        result = await client.call_tool("flaky_read", {"key": key, "failures": 0})
        assert result.structured_content == {"result": 1}
        assert await _calls(client, key) == 1  # the failed attempts never reached the server
        assert proxy.failed == 2
    assert len(fake_sleep.waits) == 2


async def test_a_gateway_failure_is_a_typed_retryable_error(
    client_server: ServerProcess, fake_sleep: FakeSleep
) -> None:
    key = _key()
    policy = RetryPolicy(attempts=2)
    async with running_proxy(client_server) as proxy, Client(proxy.url, sleep=fake_sleep, retry=policy) as client:
        proxy.failures = [Failure(503, "text/html", HTML_502, {"Retry-After": "3"})] * 2
        with pytest.raises(DependencyUnavailable) as caught:
            await client.call_tool("flaky_read", {"key": key, "failures": 0}, timeout=None)
    assert caught.value.retryable
    assert caught.value.retry_after_ms == 3000
    assert caught.value.details == {"reason": "gateway_error", "status": 503}
    assert fake_sleep.waits == [3.0]


async def test_a_gateway_failure_is_not_retried_for_a_non_idempotent_tool(
    client_server: ServerProcess, fake_sleep: FakeSleep
) -> None:
    key = _key()
    async with running_proxy(client_server) as proxy, Client(proxy.url, sleep=fake_sleep) as client:
        proxy.failures = [Failure(502, "text/html", HTML_502)]
        with pytest.raises(DependencyUnavailable):
            await client.call_tool("flaky_write", {"key": key, "failures": 0})
        assert fake_sleep.waits == []
        # The connection is fine: the next call goes through.
        result = await client.call_tool("flaky_write", {"key": key, "failures": 0})
    assert result.structured_content == {"result": 1}


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_a_servers_own_jsonrpc_error_is_not_retried(
    client_server: ServerProcess, fake_sleep: FakeSleep, status: int
) -> None:
    key = _key()
    async with running_proxy(client_server) as proxy, Client(proxy.url, sleep=fake_sleep) as client:
        proxy.failures = [Failure(status, "application/json", SERVER_ERROR)]
        with pytest.raises(MCPError) as caught:
            await client.call_tool("flaky_read", {"key": key, "failures": 0})
        assert await _calls(client, key) == 0
    assert caught.value.code == -32603
    assert caught.value.error.data == {"detail": "boom"}
    assert fake_sleep.waits == []


async def test_a_plain_500_page_is_not_a_gateway_failure(client_server: ServerProcess, fake_sleep: FakeSleep) -> None:
    """A 500 comes from the server itself (or its framework): not retried, as before."""
    key = _key()
    async with running_proxy(client_server) as proxy, Client(proxy.url, sleep=fake_sleep) as client:
        proxy.failures = [Failure(500, "text/html", b"<h1>Internal Server Error</h1>")]
        with pytest.raises(MCPError) as caught:
            await client.call_tool("flaky_read", {"key": key, "failures": 0})
    assert caught.value.code == -32603
    assert fake_sleep.waits == []


def test_gateway_failure_reads_only_gateway_statuses_without_jsonrpc() -> None:
    assert gateway_failure(500, None, HTML_502) is None
    assert gateway_failure(404, None, HTML_502) is None
    assert gateway_failure(502, None, SERVER_ERROR) is None
    body = gateway_failure(504, "7", HTML_502)
    assert body is not None
    error = orjson.loads(body)["error"]
    assert error["data"]["code"] == "dependency_unavailable"
    assert error["data"]["retryable"] is True
    assert error["data"]["retry_after_ms"] == 7000
    assert (
        "retry_after_ms"
        not in orjson.loads(gateway_failure(502, "Wed, 21 Oct 2026 07:28:00 GMT", b"") or b"")["error"]["data"]
    )
