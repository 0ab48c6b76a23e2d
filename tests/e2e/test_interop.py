"""The official SDK's client against a real mcplane process, over every transport and both eras.

Each variant opens one connection for the module (a stdio subprocess, or a Streamable HTTP or
WebSocket connection to the shared server subprocess) and every test runs on it.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from mcp import Client, MCPError, StdioServerParameters
from mcp_types import TextContent, TextResourceContents

from mcplane import websocket_client
from tests.conftest import E2E_APP, REPO_ROOT, ServerProcess, error_of
from tests.e2e.plane_app import SECRET

pytestmark = pytest.mark.asyncio(loop_scope="module")

LEGACY = "2025-11-25"
MODERN = "2026-07-28"
CORRELATION_ID = re.compile(r"^[0-9a-f]{16}$")


@dataclass(frozen=True)
class Variant:
    transport: str
    mode: str

    @property
    def era(self) -> str:
        return LEGACY if self.mode == "legacy" else MODERN

    def __str__(self) -> str:
        return f"{self.transport}-{self.mode}"


VARIANTS = [
    Variant("stdio", "legacy"),
    Variant("stdio", "auto"),
    Variant("http", "legacy"),
    Variant("http", "auto"),
    Variant("http", MODERN),
    Variant("ws", "legacy"),
    Variant("ws", MODERN),
]


@dataclass(frozen=True)
class Connected:
    client: Client
    variant: Variant


def _client(variant: Variant, server: ServerProcess) -> Client:
    if variant.transport == "stdio":
        params = StdioServerParameters(
            command=sys.executable, args=["-m", "mcplane.cli", "run", str(E2E_APP)], cwd=str(REPO_ROOT)
        )
        return Client(params, mode=variant.mode)
    if variant.transport == "http":
        return Client(server.url, mode=variant.mode)
    transport: AbstractAsyncContextManager[Any] = websocket_client(server.ws_url)
    return Client(transport, mode=variant.mode)  # pyright: ignore[reportArgumentType]


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=VARIANTS, ids=str)
async def conn(request: pytest.FixtureRequest, e2e_server: ServerProcess) -> AsyncIterator[Connected]:
    """One open client per variant, held by its own task so it is entered and exited there."""
    variant: Variant = request.param
    opened: asyncio.Future[Client] = asyncio.get_running_loop().create_future()
    release = asyncio.Event()

    async def hold() -> None:
        async with _client(variant, e2e_server) as client:
            opened.set_result(client)
            await release.wait()

    holder = asyncio.create_task(hold())
    done, _ = await asyncio.wait({holder, opened}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if opened not in done:
        holder.cancel()
        if holder in done and holder.exception() is not None:
            raise holder.exception()  # type: ignore[misc]
        pytest.fail(f"{variant}: the client did not connect within 30 s")
    yield Connected(opened.result(), variant)
    release.set()
    await asyncio.wait_for(holder, timeout=30)


async def test_connects_in_the_requested_protocol_era(conn: Connected) -> None:
    assert conn.client.protocol_version == conn.variant.era
    if conn.variant.mode != MODERN:  # a pinned version skips discovery, so there is no server info to read
        assert conn.client.server_info is not None
        assert conn.client.server_info.name == "e2e"


async def test_tools_list_derives_schemas_from_type_hints(conn: Connected) -> None:
    tools = {tool.name: tool for tool in (await conn.client.list_tools()).tools}
    assert {"add", "get_invoice", "count_call", "steps", "whoami", "hang", "explode", "noisy", "diagnostics"} <= set(
        tools
    )

    invoice = tools["get_invoice"]
    assert invoice.description == "Fetch an invoice (an async tool with a model as its output)."
    assert invoice.input_schema["required"] == ["invoice_id"]
    assert invoice.input_schema["properties"]["invoice_id"]["type"] == "string"
    assert invoice.input_schema["properties"]["paid"] == {"default": False, "title": "Paid", "type": "boolean"}
    assert invoice.output_schema is not None
    assert invoice.output_schema["required"] == ["id", "amount_cents", "paid"]
    assert invoice.output_schema["properties"]["amount_cents"]["type"] == "integer"
    assert invoice.annotations is not None
    assert invoice.annotations.read_only_hint is True

    add = tools["add"]
    assert add.input_schema["properties"] == {
        "a": {"title": "A", "type": "integer"},
        "b": {"title": "B", "type": "integer"},
    }
    assert add.output_schema is not None
    assert add.output_schema["properties"] == {"result": {"title": "Result", "type": "integer"}}


async def test_injected_dependencies_and_context_are_hidden_from_the_schema(conn: Connected) -> None:
    tools = {tool.name: tool for tool in (await conn.client.list_tools()).tools}
    assert tools["count_call"].input_schema.get("properties", {}) == {}
    assert set(tools["steps"].input_schema["properties"]) == {"n"}
    assert tools["whoami"].input_schema.get("properties", {}) == {}


async def test_sync_tool_returns_structured_content(conn: Connected) -> None:
    result = await conn.client.call_tool("add", {"a": 2, "b": 40})
    assert result.is_error is False
    assert result.structured_content == {"result": 42}
    assert result.content == [TextContent(type="text", text="42")]


async def test_async_tool_returns_its_model_as_structured_content(conn: Connected) -> None:
    result = await conn.client.call_tool("get_invoice", {"invoice_id": "inv-7", "paid": True})
    assert result.is_error is False
    assert result.structured_content == {"id": "inv-7", "amount_cents": 1250, "paid": True}


async def test_injected_dependency_is_shared_by_calls(conn: Connected) -> None:
    first = await conn.client.call_tool("count_call", {})
    second = await conn.client.call_tool("count_call", {})
    assert first.structured_content is not None
    assert second.structured_content is not None
    assert second.structured_content["result"] > first.structured_content["result"] >= 1


async def test_static_resource_and_template(conn: Connected) -> None:
    resources = (await conn.client.list_resources()).resources
    assert [(str(r.uri), r.mime_type) for r in resources] == [("config://app", "application/json")]
    templates = (await conn.client.list_resource_templates()).resource_templates
    assert [t.uri_template for t in templates] == ["invoices://{invoice_id}"]

    static = await conn.client.read_resource("config://app")
    assert static.contents == [
        TextResourceContents(uri="config://app", mime_type="application/json", text='{"region": "eu-west-1"}')
    ]
    templated = await conn.client.read_resource("invoices://inv-9")
    assert len(templated.contents) == 1
    assert isinstance(templated.contents[0], TextResourceContents)
    assert templated.contents[0].text == "invoice inv-9"


async def test_unknown_resource_is_a_jsonrpc_error(conn: Connected) -> None:
    with pytest.raises(MCPError) as caught:
        await conn.client.read_resource("nowhere://x")
    assert caught.value.error.code == -32602


async def test_prompts_list_and_render(conn: Connected) -> None:
    prompts = {p.name: p for p in (await conn.client.list_prompts()).prompts}
    review = prompts["review"]
    assert review.arguments is not None
    assert [(a.name, a.required) for a in review.arguments] == [("invoice_id", True), ("tone", False)]

    rendered = await conn.client.get_prompt("review", {"invoice_id": "inv-1", "tone": "friendly"})
    assert len(rendered.messages) == 1
    assert rendered.messages[0].role == "user"
    assert rendered.messages[0].content == TextContent(type="text", text="Review invoice inv-1 in a friendly tone.")


async def test_unknown_prompt_is_a_not_found_jsonrpc_error(conn: Connected) -> None:
    with pytest.raises(MCPError) as caught:
        await conn.client.get_prompt("no_such_prompt", {})
    assert caught.value.error.code == -32602
    assert isinstance(caught.value.error.data, dict)
    assert caught.value.error.data["code"] == "not_found"


async def test_prompt_without_a_required_argument_is_invalid_arguments(conn: Connected) -> None:
    with pytest.raises(MCPError) as caught:
        await conn.client.get_prompt("review", {"tone": "stern"})
    assert caught.value.error.code == -32602
    data = caught.value.error.data
    assert isinstance(data, dict)
    assert data["code"] == "invalid_arguments"
    assert [d["field"] for d in data["details"]] == ["invoice_id"]
    assert CORRELATION_ID.match(data["correlation_id"])


async def test_progress_notifications_reach_the_client(conn: Connected) -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    result = await conn.client.call_tool("steps", {"n": 3}, progress_callback=on_progress)
    assert result.structured_content == {"result": "3 steps"}
    assert seen == [(1, 3, "step 1"), (2, 3, "step 2"), (3, 3, "step 3")]


async def test_each_call_gets_its_own_context(conn: Connected) -> None:
    first = await conn.client.call_tool("whoami", {})
    second = await conn.client.call_tool("whoami", {})
    assert first.structured_content is not None
    assert second.structured_content is not None
    me = first.structured_content
    assert me["subject"] == "anonymous"
    assert me["anonymous"] is True
    assert CORRELATION_ID.match(me["correlation_id"])
    assert me["correlation_id"] != second.structured_content["correlation_id"]
    # The tool declares timeout="3s": the deadline it sees is bounded by that and already running.
    assert 0 < me["remaining"] <= 3.0
    assert me["ledger_calls"] >= 0


async def test_timeout_cancels_the_call_and_answers_timeout(conn: Connected) -> None:
    started = time.monotonic()
    result = await conn.client.call_tool("hang", {})
    elapsed = time.monotonic() - started
    assert result.is_error is True
    error = error_of(result)
    assert error["code"] == "timeout"
    assert error["retryable"] is True
    assert CORRELATION_ID.match(error["correlation_id"])
    assert elapsed < 5, "the 100 ms timeout should end the call long before the client gives up"


async def test_crash_answers_internal_error_without_the_exception_text(conn: Connected) -> None:
    result = await conn.client.call_tool("explode", {})
    assert result.is_error is True
    wire = result.model_dump_json(by_alias=True)
    assert SECRET not in wire
    assert "RuntimeError" not in wire
    assert "Traceback" not in wire
    error = error_of(result)
    assert error == {
        "code": "internal_error",
        "message": "internal error",
        "retryable": False,
        "correlation_id": error["correlation_id"],
    }
    assert CORRELATION_ID.match(error["correlation_id"])
    assert error["correlation_id"] in wire


async def test_invalid_arguments_name_the_fields(conn: Connected) -> None:
    missing = await conn.client.call_tool("get_invoice", {})
    assert missing.is_error is True
    error = error_of(missing)
    assert error["code"] == "invalid_arguments"
    assert error["retryable"] is False
    assert error["details"] == [{"field": "invoice_id", "message": "Field required", "type": "missing"}]

    wrong_type = await conn.client.call_tool("add", {"a": 1, "b": "two"})
    details = error_of(wrong_type)["details"]
    assert [(d["field"], d["type"]) for d in details] == [("b", "int_parsing")]


async def test_unknown_tool_is_a_jsonrpc_error(conn: Connected) -> None:
    with pytest.raises(MCPError) as caught:
        await conn.client.call_tool("no_such_tool", {})
    assert caught.value.error.code == -32602
    assert isinstance(caught.value.error.data, dict)
    assert caught.value.error.data["code"] == "not_found"


async def test_connection_survives_errors(conn: Connected) -> None:
    """After timeouts, crashes and protocol errors the same connection still serves calls."""
    result = await conn.client.call_tool("add", {"a": 1, "b": 1})
    assert result.structured_content == {"result": 2}
