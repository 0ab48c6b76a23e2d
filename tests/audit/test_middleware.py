"""The audit slot driven with a real mcplane Context and fake Calls: what each call's records say."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
import orjson
import pytest
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, GetPromptResult, ReadResourceResult, TextContent, TextResourceContents
from starlette.requests import Request

from mcplane import Context, Forbidden, InvalidArguments, Plane, Principal
from mcplane.audit import AuditOptions, JsonlSink, canonical, verify_lines
from mcplane.audit.chain import sha256_hex
from mcplane.middleware.audit import AuditMiddleware
from mcplane.middleware.errors import ErrorsMiddleware, error_result
from mcplane.pipeline import Call, CallNext, Pipeline
from tests.conftest import error_of

ALICE = Principal(subject="alice", tenant="acme", roles=frozenset({"billing"}))
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _ok(text: str = "done") -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content={"value": text})


def _call(name: str = "charge", arguments: Mapping[str, Any] | None = None, *, context: Context | None = None) -> Call:
    ctx = context or Context(principal=ALICE, correlation_id="cid-1")
    return Call("tool", name, arguments if arguments is not None else {"amount": 5}, ctx)


async def _records(sink: JsonlSink) -> list[dict[str, Any]]:
    lines = await sink.read_lines()
    report = verify_lines(lines)
    assert report.ok, report.render()
    return [orjson.loads(line) for line in lines]


@pytest.fixture
async def sink(tmp_path: Path) -> Any:
    made = JsonlSink(tmp_path / "audit.jsonl")
    yield made
    await made.aclose()


async def test_a_successful_call_writes_pending_then_ok(sink: JsonlSink) -> None:
    audit = AuditMiddleware(sink)
    arguments = {"amount": 5, "card": "4111-very-private-argument"}
    result = _ok("very-private-result")

    async def provider(call: Call) -> CallToolResult:
        return result

    assert await audit(_call(arguments=arguments), provider) is result
    pending, outcome = await _records(sink)
    assert pending["status"] == "pending"
    assert (pending["duration_ms"], pending["error_code"], pending["result_sha256"]) == (None, None, "")
    assert outcome["status"] == "ok"
    assert outcome["error_code"] is None
    assert outcome["duration_ms"] >= 0
    for record in (pending, outcome):
        assert _TIME.match(record["time"])
        assert (record["subject"], record["tenant"], record["kind"], record["name"]) == (
            "alice",
            "acme",
            "tool",
            "charge",
        )
        assert record["args_sha256"] == sha256_hex(canonical(arguments))
        assert record["correlation_id"] == "cid-1"
        assert (record["client_ip"], record["user_agent"], record["trace_id"], record["session_id"]) == ("", "", "", "")
    assert pending["call_id"] == outcome["call_id"] != ""
    wire = result.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert outcome["result_sha256"] == sha256_hex(canonical(wire))
    text = "\n".join(await sink.read_lines())
    assert "very-private-argument" not in text
    assert "very-private-result" not in text


async def test_argument_order_does_not_change_the_hash(sink: JsonlSink) -> None:
    audit = AuditMiddleware(sink)

    async def provider(call: Call) -> CallToolResult:
        return _ok()

    await audit(_call(arguments={"a": 1, "b": [1, 2]}), provider)
    await audit(_call(arguments={"b": [1, 2], "a": 1}), provider)
    hashes = {r["args_sha256"] for r in await _records(sink)}
    assert len(hashes) == 1


async def test_a_tool_error_result_is_recorded_with_its_code(sink: JsonlSink) -> None:
    audit = AuditMiddleware(sink)

    async def provider(call: Call) -> CallToolResult:
        return error_result(InvalidArguments("amount must be positive"), call.context.correlation_id)

    result = await audit(_call(), provider)
    assert result.is_error
    _, outcome = await _records(sink)
    assert (outcome["status"], outcome["error_code"]) == ("error", "invalid_arguments")


async def test_a_tool_error_without_a_code_is_a_tool_error(sink: JsonlSink) -> None:
    audit = AuditMiddleware(sink)

    async def provider(call: Call) -> CallToolResult:
        return CallToolResult(content=[TextContent(type="text", text="boom")], is_error=True)

    await audit(_call(), provider)
    _, outcome = await _records(sink)
    assert (outcome["status"], outcome["error_code"]) == ("error", "tool_error")


async def test_a_denial_from_authorize_is_recorded_and_reraised(sink: JsonlSink) -> None:
    ran: list[str] = []

    async def authorize(call: Call, call_next: CallNext) -> Any:
        if "admin" not in call.context.principal.roles:
            raise Forbidden()
        return await call_next(call)

    async def provider(call: Call) -> CallToolResult:
        ran.append(call.name)
        return _ok()

    pipeline = Pipeline()
    pipeline.set("audit", AuditMiddleware(sink))
    pipeline.set("authorize", authorize)
    with pytest.raises(Forbidden):
        await pipeline.compose(provider)(_call())
    pipeline.set("errors", ErrorsMiddleware())
    result = await pipeline.compose(provider)(_call())
    assert ran == []
    assert result.is_error
    assert error_of(result)["code"] == "forbidden"
    records = await _records(sink)
    assert [(r["status"], r["error_code"]) for r in records] == [("pending", None), ("error", "forbidden")] * 2


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (MCPError(code=-32602, message="Unknown tool: x", data={"code": "not_found"}), "not_found"),
        (MCPError(code=-32603, message="error reading resource"), "protocol_error"),
        (MCPError(code=-32602, message="bad params"), "invalid_arguments"),
        (MCPError(code=-32601, message="Method not found"), "not_found"),
        (RuntimeError("crash with a secret inside"), "internal_error"),
        (InvalidArguments(), "invalid_arguments"),
    ],
)
async def test_a_raised_error_is_recorded_with_its_code_and_reraised(
    sink: JsonlSink, exc: Exception, code: str
) -> None:
    audit = AuditMiddleware(sink)

    async def provider(call: Call) -> Any:
        raise exc

    with pytest.raises(type(exc)):
        await audit(_call(), provider)
    _, outcome = await _records(sink)
    assert (outcome["status"], outcome["error_code"], outcome["result_sha256"]) == ("error", code, "")
    assert "secret" not in "\n".join(await sink.read_lines())


async def test_a_resource_the_sdk_cannot_find_is_recorded_as_not_found(sink: JsonlSink) -> None:
    audit = AuditMiddleware(sink)

    async def read(call: Call) -> Any:
        raise MCPError(code=-32602, message="resource not found", data={"uri": call.name})

    with pytest.raises(MCPError):
        await audit(Call("resource", "files://..", {}, Context(principal=ALICE)), read)
    _, outcome = await _records(sink)
    assert (outcome["kind"], outcome["status"], outcome["error_code"]) == ("resource", "error", "not_found")


async def test_a_cancelled_call_is_recorded_as_cancelled(sink: JsonlSink) -> None:
    audit = AuditMiddleware(sink)
    started = anyio.Event()

    async def provider(call: Call) -> Any:
        started.set()
        await anyio.Event().wait()

    async with anyio.create_task_group() as tg:
        tg.start_soon(audit, _call(), provider)
        await started.wait()
        tg.cancel_scope.cancel()
    _, outcome = await _records(sink)
    assert (outcome["status"], outcome["error_code"]) == ("error", "cancelled")


async def test_resource_reads_and_prompt_gets_are_recorded(sink: JsonlSink) -> None:
    audit = AuditMiddleware(sink)
    ctx = Context(principal=ALICE)

    async def read(call: Call) -> ReadResourceResult:
        return ReadResourceResult(contents=[TextResourceContents(uri="users://1", text="{}")])

    async def prompt(call: Call) -> GetPromptResult:
        return GetPromptResult(messages=[])

    await audit(Call("resource", "users://1", {}, ctx), read)
    await audit(Call("prompt", "greet", {"who": "bob"}, ctx), prompt)
    records = await _records(sink)
    assert [(r["kind"], r["name"], r["status"]) for r in records[1::2]] == [
        ("resource", "users://1", "ok"),
        ("prompt", "greet", "ok"),
    ]


def _http_context(
    headers: dict[str, str], *, meta: dict[str, Any] | None = None, client: str = "203.0.113.9"
) -> Context:
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/mcp",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": (client, 51234),
    }
    session = SimpleNamespace(_connection=SimpleNamespace(session_id="sess-9"))
    request_context: ServerRequestContext[Any, Any] = ServerRequestContext(
        session=session,  # type: ignore[arg-type]
        lifespan_context={},
        protocol_version="2025-11-25",
        method="tools/call",
        meta=meta,  # type: ignore[arg-type]
        request=Request(scope),
    )
    return Context(request_context=request_context, principal=ALICE, correlation_id="cid-http")


async def test_http_facts_come_from_the_request(sink: JsonlSink) -> None:
    audit = AuditMiddleware(sink)
    ctx = _http_context(
        {"User-Agent": "agent/1.0", "traceparent": f"00-{TRACE}-00f067aa0ba902b7-01", "X-Forwarded-For": "198.51.100.1"}
    )

    async def provider(call: Call) -> CallToolResult:
        return _ok()

    await audit(_call(context=ctx), provider)
    trusting = AuditMiddleware(sink, AuditOptions(trust_forwarded=True))
    await trusting(_call(context=ctx), provider)
    first, _, second, _ = await _records(sink)
    assert (first["client_ip"], first["user_agent"], first["trace_id"], first["session_id"]) == (
        "203.0.113.9",
        "agent/1.0",
        TRACE,
        "sess-9",
    )
    assert second["client_ip"] == "198.51.100.1"


async def test_the_trace_id_falls_back_to_meta_and_ignores_junk(sink: JsonlSink) -> None:
    audit = AuditMiddleware(sink)

    async def provider(call: Call) -> CallToolResult:
        return _ok()

    await audit(_call(context=_http_context({}, meta={"traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"})), provider)
    await audit(_call(context=_http_context({"traceparent": "00-not-a-trace"})), provider)
    records = await _records(sink)
    assert [r["trace_id"] for r in records[::2]] == [TRACE, ""]


async def test_a_real_plane_call_is_audited(sink: JsonlSink) -> None:
    plane = Plane("audited")

    @plane.tool()
    def add(a: int, b: int) -> int:
        return a + b

    audit = AuditMiddleware(sink)
    plane.pipeline.set("audit", audit)
    chain = plane.pipeline.compose(plane._provide)
    ok = await chain(Call("tool", "add", {"a": 2, "b": 3}, plane.make_context(None, None)))
    bad = await chain(Call("tool", "add", {"a": "x"}, plane.make_context(None, None)))
    assert not ok.is_error
    assert bad.is_error
    records = await _records(sink)
    assert [(r["name"], r["status"], r["error_code"]) for r in records] == [
        ("add", "pending", None),
        ("add", "ok", None),
        ("add", "pending", None),
        ("add", "error", "invalid_arguments"),
    ]
    assert records[1]["subject"] == "anonymous"
