"""Structured logs: one JSON event per call and per lifecycle step; text on a terminal; secrets masked."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Any

import anyio
import orjson
import pytest
from mcp import Client

from mcplane import Plane, secrets
from mcplane.context import Principal
from mcplane.observability import configure_logging, lifecycle_event
from mcplane.observability.logs import EVENT_KEY, JSONFormatter, TextFormatter
from mcplane.tool_policy import ToolSource

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    mcplane = logging.getLogger("mcplane")
    saved = (list(root.handlers), root.level, mcplane.level)
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])
    mcplane.setLevel(saved[2])


def _record(name: str = "mcplane.calls", event: dict[str, Any] | None = None, **kwargs: Any) -> logging.LogRecord:
    record = logging.LogRecord(name, logging.INFO, __file__, 1, kwargs.pop("msg", "call"), None, None)
    if event is not None:
        setattr(record, EVENT_KEY, event)
    for key, value in kwargs.items():
        setattr(record, key, value)
    return record


CALL = {
    "event": "call",
    "kind": "tool",
    "name": "add",
    "subject": "alice",
    "tenant": "acme",
    "duration_ms": 0.412,
    "status": "error",
    "code": "rate_limited",
    "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
    "correlation_id": "c0ffee",
}


def test_a_call_event_is_one_json_object_with_its_fields() -> None:
    line = JSONFormatter().format(_record(event=CALL))
    assert "\n" not in line
    parsed = orjson.loads(line)
    assert parsed.pop("time").endswith("Z")
    assert parsed == {"level": "info", "logger": "mcplane.calls", **CALL}


def test_other_records_have_a_message_and_their_traceback() -> None:
    try:
        raise ValueError("bad")
    except ValueError:
        import sys

        record = _record("mcplane.errors", msg="tool crashed", exc_info=sys.exc_info())
    parsed = orjson.loads(JSONFormatter().format(record))
    assert parsed["message"] == "tool crashed"
    assert parsed["exception"].startswith("Traceback")
    assert "ValueError: bad" in parsed["exception"]


def test_text_for_a_person() -> None:
    line = TextFormatter().format(_record(event=CALL))
    assert line.endswith(
        "INFO  mcplane.calls: call tool add error rate_limited 0.412ms subject=alice tenant=acme "
        "trace_id=4bf92f3577b34da6a3ce929d0e0e4736 correlation_id=c0ffee"
    )
    lifecycle = TextFormatter().format(_record("mcplane.lifecycle", {"event": "ready", "transport": "http", "pid": 7}))
    assert lifecycle.endswith("INFO  mcplane.lifecycle: ready transport=http pid=7")


def test_event_fields_holding_a_secret_are_masked() -> None:
    resolver = secrets.Secrets(environ={"API_TOKEN": "tok-12345-secret"})
    resolver.resolve({"token": "${env:API_TOKEN}"})
    secrets.redact_all_logs(resolver)
    try:
        event = {**CALL, "subject": "user tok-12345-secret"}
        assert "tok-12345-secret" not in JSONFormatter().format(_record(event=event))
        assert "tok-12345-secret" not in TextFormatter().format(_record(event=event))
    finally:
        secrets.stop_redacting_logs(resolver)


@pytest.mark.usefixtures("restore_logging")
def test_auto_is_text_on_a_terminal_and_json_otherwise() -> None:
    terminal, pipe = _Terminal(), io.StringIO()
    configure_logging("info", "auto", stream=terminal)
    lifecycle_event("ready", transport="stdio")
    configure_logging("info", "auto", stream=pipe)
    lifecycle_event("ready", transport="stdio")
    assert terminal.getvalue().rstrip().endswith("mcplane.lifecycle: ready transport=stdio")
    assert orjson.loads(pipe.getvalue())["event"] == "ready"


@pytest.mark.usefixtures("restore_logging")
def test_the_level_is_mcplanes_and_other_libraries_stay_at_warning() -> None:
    out = io.StringIO()
    configure_logging("warning", "json", stream=out)
    lifecycle_event("ready")
    logging.getLogger("some.library").info("chatter")
    logging.getLogger("some.library").warning("careful")
    logging.getLogger("mcplane.x").warning("watch out")
    lines = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert [line["message"] for line in lines] == ["careful", "watch out"]


@pytest.mark.usefixtures("restore_logging")
def test_an_applications_own_handler_is_kept_unless_forced() -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    mine = logging.StreamHandler(io.StringIO())
    root.addHandler(mine)
    assert configure_logging(force=False) is None
    assert root.handlers == [mine]
    installed = configure_logging(force=True, stream=io.StringIO())
    assert root.handlers == [installed]


@pytest.mark.usefixtures("restore_logging")
def test_the_sdks_default_handler_is_replaced() -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    Plane("sdk-handler")  # the SDK's MCPServer calls logging.basicConfig when nothing is configured
    assert root.handlers, "the SDK installed its handler"
    out = io.StringIO()
    assert configure_logging(force=False, stream=out, log_format="json") is not None
    lifecycle_event("ready")
    assert orjson.loads(out.getvalue())["event"] == "ready"


async def test_each_call_is_one_event(caplog: pytest.LogCaptureFixture) -> None:
    plane = Plane("logged")

    @plane.tool()
    def add(a: int, b: int) -> int:
        return a + b

    @plane.tool(rate_limit="1/minute")
    def scarce() -> str:
        return "ok"

    caplog.set_level(logging.INFO, logger="mcplane.calls")
    with anyio.fail_after(10):
        async with Client(plane.sdk) as client:
            await client.call_tool("add", {"a": 1, "b": 2}, meta={"traceparent": TRACEPARENT})
            await client.call_tool("scarce", {})
            await client.call_tool("scarce", {})
    events = [getattr(r, EVENT_KEY) for r in caplog.records if r.name == "mcplane.calls"]
    assert [(e["name"], e["status"], e["code"]) for e in events] == [
        ("add", "ok", None),
        ("scarce", "ok", None),
        ("scarce", "error", "rate_limited"),
    ]
    first = events[0]
    assert first["kind"] == "tool"
    assert first["subject"] == "anonymous"
    assert first["tenant"] is None
    assert first["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert len(first["correlation_id"]) == 16
    assert first["duration_ms"] >= 0
    assert "upstream" not in first


async def test_the_principal_and_upstream_are_in_the_event(caplog: pytest.LogCaptureFixture) -> None:
    from mcplane.observability.middleware import ObserveMiddleware
    from mcplane.pipeline import Call

    caplog.set_level(logging.INFO, logger="mcplane.calls")
    plane = Plane("gateway-ish")
    context = plane.make_context(None, None)
    context = context.replace(principal=Principal("bob", tenant="acme"))

    async def provider(call: Call) -> str:
        return "ok"

    call = Call("tool", "billing.charge", {}, context, source=ToolSource(upstream="billing"))
    assert await ObserveMiddleware(None)(call, provider) == "ok"
    (record,) = [r for r in caplog.records if r.name == "mcplane.calls"]
    event = getattr(record, EVENT_KEY)
    assert (event["subject"], event["tenant"], event["upstream"]) == ("bob", "acme", "billing")


async def test_the_call_log_names_the_caller_authentication_found(caplog: pytest.LogCaptureFixture) -> None:
    from mcplane.auth.middleware import AuthenticateMiddleware, current_principal
    from mcplane.observability.middleware import ObserveMiddleware
    from mcplane.pipeline import Call, Pipeline

    caplog.set_level(logging.INFO, logger="mcplane.calls")
    pipeline = Pipeline()
    pipeline.set("metrics", ObserveMiddleware(None))  # outside authentication: it logs after the call returns
    pipeline.set("authenticate", AuthenticateMiddleware(required=True))

    async def provider(call: Call) -> str:
        return call.context.principal.subject

    token = current_principal.set(Principal("carol", tenant="acme"))
    try:
        answer = await pipeline.compose(provider)(Call("tool", "whoami", {}, Plane("p").make_context(None, None)))
    finally:
        current_principal.reset(token)
    assert answer == "carol"
    (record,) = [r for r in caplog.records if r.name == "mcplane.calls"]
    event = getattr(record, EVENT_KEY)
    assert (event["subject"], event["tenant"]) == ("carol", "acme")
