"""Tracing: one SERVER span per call on both paths, the caller's trace continued, the span's passed on."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
import pytest
from mcp.server._otel import OpenTelemetryMiddleware as SDKOpenTelemetryMiddleware
from mcp.shared import _otel as sdk_otel
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from mcplane import Context, Plane
from mcplane.config import PlaneConfig, TracingSection
from mcplane.errors import ConfigError
from mcplane.observability import tracing
from mcplane.transports.http import HTTPApp, HTTPOptions
from tests.observability.support import modern_call, modern_headers

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


@pytest.fixture
def exporter(monkeypatch: pytest.MonkeyPatch) -> InMemorySpanExporter:
    """Spans of mcplane's provider and of the SDK's own middleware, kept in memory."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    monkeypatch.setattr(tracing, "build_tracer_provider", lambda *args, **kwargs: provider)
    monkeypatch.setattr(sdk_otel, "_tracer", provider.get_tracer("mcp-python-sdk"))
    return memory


def make_plane(*, traced: bool = True) -> Plane:
    config = PlaneConfig.model_validate({"observability": {"tracing": {"enabled": traced}}})
    plane = Plane("traced", config=config)

    @plane.tool()
    def add(a: int, b: int) -> int:
        return a + b

    @plane.tool()
    def boom() -> str:
        raise RuntimeError("crash")

    @plane.tool()
    async def onward(ctx: Context) -> dict[str, Any]:
        """What a call this tool made would carry (it runs on the SDK's path: it takes a Context)."""
        return ctx.propagation_meta()

    return plane


@asynccontextmanager
async def serving(plane: Plane) -> AsyncIterator[httpx.AsyncClient]:
    app = HTTPApp(plane, HTTPOptions())
    async with app.running():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            yield http


async def call(http: httpx.AsyncClient, name: str, arguments: dict[str, Any], **headers: str) -> dict[str, Any]:
    message = modern_call(name, arguments)
    if "meta_traceparent" in headers:
        message["params"]["_meta"]["traceparent"] = headers.pop("meta_traceparent")
    response = await http.post("/mcp", json=message, headers={**modern_headers(name), **headers})
    text = response.text
    if response.headers["content-type"].startswith("text/event-stream"):
        text = next(line[5:] for line in text.splitlines() if line.startswith("data:") and line[5:].strip())
    return orjson.loads(text)


def calls_named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.name == name]


async def test_a_call_is_one_server_span_continuing_the_callers_trace(exporter: InMemorySpanExporter) -> None:
    async with serving(make_plane()) as http:
        await call(http, "add", {"a": 1, "b": 2}, meta_traceparent=TRACEPARENT)
    (span,) = calls_named(exporter, "tools/call add")
    assert span.kind is SpanKind.SERVER
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert span.parent is not None
    assert format(span.parent.span_id, "016x") == PARENT_ID
    attributes = dict(span.attributes or {})
    assert attributes["mcp.method.name"] == "tools/call"
    assert attributes["gen_ai.tool.name"] == attributes["mcp.tool.name"] == "add"
    assert attributes["gen_ai.operation.name"] == "execute_tool"
    assert len(str(attributes["mcplane.correlation_id"])) == 16
    assert span.status.status_code is StatusCode.UNSET


async def test_the_http_header_carries_the_trace_when_meta_does_not(exporter: InMemorySpanExporter) -> None:
    async with serving(make_plane()) as http:
        await call(http, "add", {"a": 1, "b": 2}, traceparent=TRACEPARENT)
    (span,) = calls_named(exporter, "tools/call add")
    assert format(span.context.trace_id, "032x") == TRACE_ID


async def test_a_failed_call_carries_its_code(exporter: InMemorySpanExporter) -> None:
    async with serving(make_plane()) as http:
        await call(http, "boom", {})
    (span,) = calls_named(exporter, "tools/call boom")
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == "internal_error"


async def test_the_sdk_path_has_one_span_per_call_too(exporter: InMemorySpanExporter) -> None:
    plane = make_plane()
    async with serving(plane) as http:
        answer = await call(http, "onward", {}, meta_traceparent=TRACEPARENT)
        meta = modern_call("x", {})["params"]["_meta"]
        listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {"_meta": meta}}
        headers = {**modern_headers("x"), "mcp-method": "tools/list"}
        del headers["mcp-name"]
        assert (await http.post("/mcp", json=listing, headers=headers)).status_code == 200
        narrowed = [type(m) for m in plane.sdk._lowlevel_server.middleware]
    (span,) = calls_named(exporter, "tools/call onward")  # mcplane's; the SDK's is narrowed away
    assert span.instrumentation_scope is not None
    assert span.instrumentation_scope.name == "mcplane"
    assert calls_named(exporter, "tools/list"), "other messages keep the SDK's span"
    # The tool ran inside the span: what it passes on makes the next hop the span's child.
    carried = answer["result"]["structuredContent"]
    assert carried["traceparent"] == f"00-{TRACE_ID}-{format(span.context.span_id, '016x')}-01"
    assert SDKOpenTelemetryMiddleware not in narrowed
    assert tracing.OpenTelemetryMiddleware in narrowed
    # Stopping the plane puts the SDK's own middleware back.
    assert SDKOpenTelemetryMiddleware in [type(m) for m in plane.sdk._lowlevel_server.middleware]


async def test_tracing_off_leaves_the_slot_empty_and_passes_the_callers_context_on() -> None:
    plane = make_plane(traced=False)
    async with serving(plane) as http:
        assert plane.pipeline.get("tracing") is None
        answer = await call(http, "onward", {}, meta_traceparent=TRACEPARENT)
    assert answer["result"]["structuredContent"]["traceparent"] == TRACEPARENT


def test_the_provider_exports_to_the_configured_collector() -> None:
    section = TracingSection(enabled=True, otlp_endpoint="http://collector:4318", service_name="billing")
    provider = tracing.build_tracer_provider(section, "fallback", make_global=False)
    try:
        (processor,) = provider._active_span_processor._span_processors
        assert processor.span_exporter._endpoint == "http://collector:4318/v1/traces"
        assert provider.resource.attributes["service.name"] == "billing"
    finally:
        provider.shutdown()
    explicit = TracingSection(enabled=True, otlp_endpoint="http://collector:4318/custom/traces")
    assert tracing._traces_url(str(explicit.otlp_endpoint)) == "http://collector:4318/custom/traces"


def test_tracing_without_the_sdk_is_a_clear_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)
    with pytest.raises(ConfigError, match=r"pip install 'mcplane\[otel\]'"):
        tracing.build_tracer_provider(TracingSection(enabled=True), "mcplane", make_global=False)
