"""The client as a whole: transports, trace context, lifecycle, endpoints."""

from __future__ import annotations

import socket
import sys

import anyio
import httpx2
import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from mcplane import ConfigError, Forbidden
from mcplane.client import Client
from tests.client.conftest import CLIENT_APP
from tests.conftest import ServerProcess

TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
SPAN_ID = 0xB7AD6B7169203331


async def test_every_transport_lists_and_calls(endpoint: str) -> None:
    async with Client(endpoint) as client:
        tools = {tool.name: tool for tool in await client.list_tools()}
        assert tools["flaky_read"].annotations is not None
        assert tools["flaky_read"].annotations.read_only_hint is True
        result = await client.call_tool("echo", {"key": "t", "text": "over the wire"})
    assert result.structured_content == {"result": "over the wire"}


async def test_the_active_span_travels_as_traceparent(client_server: ServerProcess) -> None:
    """The SDK's dispatcher injects it (SEP-414); the client relies on that and adds nothing."""
    span = NonRecordingSpan(SpanContext(TRACE_ID, SPAN_ID, is_remote=False, trace_flags=TraceFlags(0x01)))
    async with Client(client_server.url) as client:
        with trace.use_span(span):
            inside = await client.call_tool("seen")
        outside = await client.call_tool("seen")
    assert inside.structured_content is not None
    assert outside.structured_content is not None
    assert inside.structured_content["traceparent"] == f"00-{TRACE_ID:032x}-{SPAN_ID:016x}-01"
    assert outside.structured_content["traceparent"] is None


async def test_concurrent_calls_share_one_connection(client_server: ServerProcess) -> None:
    answers: list[object] = []
    async with Client(client_server.ws_url) as client:
        sdk = client.sdk

        async def one(i: int) -> None:
            result = await client.call_tool("echo", {"key": "c", "text": str(i)})
            answers.append(result.structured_content)

        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(one, i)
        assert client.sdk is sdk
    assert len(answers) == 20


async def test_an_error_leaves_async_with_unwrapped(client_server: ServerProcess) -> None:
    with pytest.raises(Forbidden):  # not an ExceptionGroup from the client's task group
        async with Client(client_server.url) as client:
            await client.call_tool("flaky_write", {"key": "unwrapped", "failures": 1, "code": "forbidden"})
    with pytest.raises(KeyError):
        async with Client(client_server.url):
            raise KeyError("the caller's own")


async def test_an_argv_list_is_a_stdio_command() -> None:
    async with Client([sys.executable, "-m", "mcplane.cli", "run", str(CLIENT_APP)]) as client:
        result = await client.call_tool("echo", {"key": "argv", "text": "stdio"})
    assert result.structured_content == {"result": "stdio"}


async def test_a_refused_connection_fails_on_entry() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(httpx2.ConnectError):
        async with Client(f"http://127.0.0.1:{port}/mcp"):
            pytest.fail("connected to a closed port")


async def test_a_missing_command_fails_on_entry() -> None:
    with pytest.raises(FileNotFoundError):
        async with Client("no-such-command-zz --flag"):
            pytest.fail("started a missing command")


def test_endpoints_that_cannot_work_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="empty endpoint"):
        Client("")
    with pytest.raises(ConfigError, match="empty endpoint"):
        Client([])
    with pytest.raises(ConfigError, match="http"):
        Client("python server.py", headers={"Authorization": "Bearer x"})


async def test_a_closed_client_says_so(client_server: ServerProcess) -> None:
    client = Client(client_server.url)
    with pytest.raises(RuntimeError, match="not connected"):
        _ = client.sdk
    with pytest.raises(RuntimeError, match="async with"):
        await client.call_tool("echo", {"key": "k", "text": "t"})
    async with client:
        pass
    with pytest.raises(RuntimeError, match="async with"):
        await client.call_tool("echo", {"key": "k", "text": "t"})


def test_the_public_names_are_pinned() -> None:
    import mcplane.client

    assert set(mcplane.client.__all__) == {
        "COST_META_KEY",
        "DEFAULT",
        "Budget",
        "Client",
        "RetryPolicy",
        "Step",
        "ToolFailed",
        "current_step",
        "estimate_tokens",
    }
