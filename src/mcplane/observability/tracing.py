"""OpenTelemetry tracing: one SERVER span per call, W3C trace context in and out.

The ``tracing`` slot is filled only when ``observability.tracing.enabled``; otherwise it stays
empty and a call pays nothing for tracing.

**Parent.** A call's span continues the caller's trace: ``traceparent``/``tracestate`` in the
request's ``_meta`` (what MCP clients send), else the HTTP (or WebSocket handshake) headers.
**Onward.** While the span is current, :meth:`mcplane.Context.propagation_meta` puts *its*
``traceparent`` into the ``_meta`` of calls a tool makes, so the next hop is its child.

**One span per call, not two.** The official SDK wraps every message it dispatches in its own
SERVER span (``mcp.server._otel.OpenTelemetryMiddleware``); mcplane's hot path bypasses the
SDK, so left alone a ``tools/call`` would get one span on the hot path and two nested SERVER
spans on the SDK path. When tracing is on, mcplane narrows the SDK's middleware to skip the
three call methods (``tools/call``, ``resources/read``, ``prompts/get``), which mcplane's span
covers with richer attributes on both paths; every other message (``initialize``,
``tools/list``, ...) keeps the SDK's span. The narrowed middleware is restored when the plane
stops.

Span attributes: ``mcp.method.name``, ``gen_ai.tool.name`` and ``mcp.tool.name`` (tools),
``gen_ai.operation.name`` = ``execute_tool``, ``mcp.resource.uri`` (resources),
``gen_ai.prompt.name`` (prompts), ``mcp.session.id`` (2025-11-25 sessions),
``mcplane.correlation_id``; on failure ``error.type`` and ``mcplane.error.code`` carry the stable
error code and the span status is ERROR.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.context import Context as OTelContext
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from mcplane.audit.entry import error_code_of, result_code
from mcplane.errors import ConfigError
from mcplane.pipeline import Call, CallNext
from mcplane.sdk_adapter.otel import SDKOpenTelemetryMiddleware as _SDKOpenTelemetryMiddleware

if TYPE_CHECKING:
    from mcp.server.context import CallNext as SDKCallNext
    from mcp.server.context import HandlerResult, ServerRequestContext

    from mcplane.config import TracingSection

__all__ = ["OpenTelemetryMiddleware", "TracingMiddleware", "build_tracer_provider", "incoming_trace_context"]

logger = logging.getLogger("mcplane.tracing")

W3C = TraceContextTextMapPropagator()
CALL_METHODS = {"tool": "tools/call", "resource": "resources/read", "prompt": "prompts/get"}
_HEADER_KEYS = {b"traceparent": "traceparent", b"tracestate": "tracestate"}


def incoming_trace_context(context: Any) -> OTelContext | None:
    """The caller's trace context: ``_meta`` first, then HTTP headers; ``None`` when absent or malformed."""
    carrier: dict[str, str] = {}
    meta: Any = context.request_meta
    scope: Any = context.scope
    parent = meta.get("traceparent") if isinstance(meta, Mapping) else None
    if isinstance(parent, str):
        carrier["traceparent"] = parent
        state = meta.get("tracestate")
        if isinstance(state, str):
            carrier["tracestate"] = state
    else:
        if isinstance(scope, Mapping):
            for key, value in scope.get("headers", ()):
                name = _HEADER_KEYS.get(key)
                if name is not None:
                    carrier[name] = value.decode("latin-1")
    if "traceparent" not in carrier:
        return None
    extracted = W3C.extract(carrier)
    return extracted if trace.get_current_span(extracted).get_span_context().is_valid else None


class TracingMiddleware:
    """The ``tracing`` slot: a SERVER span around the rest of the pipeline."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self.tracer = tracer

    async def __call__(self, call: Call, call_next: CallNext) -> Any:
        ctx = call.context
        method = CALL_METHODS[call.kind]
        attributes: dict[str, Any] = {
            "mcp.method.name": method,
            "mcplane.correlation_id": ctx.correlation_id,
        }
        if call.kind == "tool":
            attributes["gen_ai.operation.name"] = "execute_tool"
            attributes["gen_ai.tool.name"] = attributes["mcp.tool.name"] = call.name
        elif call.kind == "resource":
            attributes["mcp.resource.uri"] = call.name
        else:
            attributes["gen_ai.prompt.name"] = call.name
        session_id = ctx.session_id
        if session_id:
            attributes["mcp.session.id"] = session_id
        upstream = call.source.upstream
        if upstream is not None:
            attributes["mcplane.upstream"] = str(upstream)
        with self.tracer.start_as_current_span(
            f"{method} {call.name}",
            context=incoming_trace_context(ctx),
            kind=SpanKind.SERVER,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                result = await call_next(call)
            except BaseException as exc:
                _failed(span, error_code_of(exc))
                raise
            code = result_code(result)
            if code is not None:
                _failed(span, code)
            return result


def _failed(span: trace.Span, code: str) -> None:
    span.set_attribute("error.type", code)
    span.set_attribute("mcplane.error.code", code)
    span.set_status(StatusCode.ERROR, code)


class OpenTelemetryMiddleware(_SDKOpenTelemetryMiddleware):
    """The SDK's per-message span, minus the call methods mcplane's own span covers.

    (Named like the SDK's class: the hot path recognises the SDK's built-in middleware by name.)
    """

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: SDKCallNext) -> HandlerResult:
        if ctx.method in _NARROWED:
            return await call_next(ctx)
        return await super().__call__(ctx, call_next)


_NARROWED = frozenset(CALL_METHODS.values())


def narrow_sdk_spans(lowlevel: Any) -> Callable[[], None]:
    """Swap the SDK's OpenTelemetry middleware for the narrowed one; returns the undo."""
    original: list[Any] = list(lowlevel.middleware)
    if not any(type(m) is _SDKOpenTelemetryMiddleware for m in original):
        return lambda: None
    lowlevel.middleware = [OpenTelemetryMiddleware() if type(m) is _SDKOpenTelemetryMiddleware else m for m in original]

    def undo() -> None:
        lowlevel.middleware = original

    return undo


def _traces_url(endpoint: str) -> str:
    """A collector base URL gets the OTLP/HTTP traces path; a URL with a path is used as given."""
    if urlsplit(endpoint).path in ("", "/"):
        return endpoint.rstrip("/") + "/v1/traces"
    return endpoint


def build_tracer_provider(section: TracingSection, default_service: str, *, make_global: bool = True) -> Any:
    """An SDK ``TracerProvider`` exporting to the section's OTLP/HTTP endpoint in batches.

    It becomes the process's global provider (``make_global``) unless one is set already, so
    spans that tools and libraries make (and the SDK's, for non-call messages) reach the same
    collector.
    """
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise ConfigError(
            "observability.tracing needs the OpenTelemetry SDK and OTLP exporter: pip install 'mcplane[otel]'"
        ) from None
    attributes: dict[str, Any] = {}
    if section.service_name:
        attributes["service.name"] = section.service_name
    elif not os.environ.get("OTEL_SERVICE_NAME"):
        attributes["service.name"] = default_service
    provider = TracerProvider(resource=Resource.create(attributes))
    endpoint = _traces_url(section.otlp_endpoint) if section.otlp_endpoint else None
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    if make_global and isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        trace.set_tracer_provider(provider)
    return provider
