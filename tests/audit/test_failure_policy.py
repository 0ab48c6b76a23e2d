"""Sink failures: fail closed by default, fail open on request, and never a silently dropped record."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
from mcp_types import CallToolResult, TextContent

from mcplane import Context, DependencyUnavailable, Principal
from mcplane.audit import AuditOptions, AuditSink, JsonlSink, canonical, verify_lines
from mcplane.audit.chain import CHAIN_FIELDS, sha256_hex
from mcplane.audit.postgres import PostgresSink
from mcplane.middleware.audit import AuditMiddleware
from mcplane.middleware.errors import ErrorsMiddleware
from mcplane.pipeline import Call, Pipeline
from mcplane.secrets import Secrets
from tests.audit.conftest import FlakySink, ManualClock, free_port
from tests.conftest import error_of

_LOGGED = re.compile(r"sha256=([0-9a-f]{64}) record=(\{.*\})$")


class Tool:
    """A provider that counts its runs."""

    def __init__(self) -> None:
        self.runs = 0

    async def __call__(self, call: Call) -> CallToolResult:
        self.runs += 1
        return CallToolResult(content=[TextContent(type="text", text="ok")])


def _chain(sink: AuditSink, options: AuditOptions | None = None) -> tuple[AuditMiddleware, Tool, Any]:
    audit = AuditMiddleware(sink, options)
    tool = Tool()
    pipeline = Pipeline()
    pipeline.set("errors", ErrorsMiddleware())
    pipeline.set("audit", audit)
    return audit, tool, pipeline.compose(tool)


def _call(n: int = 0) -> Call:
    return Call("tool", "transfer", {"n": n}, Context(principal=Principal("alice"), correlation_id=f"c{n}"))


def _logged(caplog: pytest.LogCaptureFixture) -> list[tuple[str, dict[str, Any]]]:
    """(content hash, content) of every audit record logged at ERROR; checks the hash matches."""
    found: list[tuple[str, dict[str, Any]]] = []
    for record in caplog.records:
        match = _LOGGED.search(record.getMessage())
        if record.name == "mcplane.audit" and record.levelno == logging.ERROR and match:
            assert sha256_hex(match.group(2).encode()) == match.group(1)
            found.append((match.group(1), orjson.loads(match.group(2))))
    return found


def _content_hash(line: str) -> str:
    record = orjson.loads(line)
    return sha256_hex(canonical({k: v for k, v in record.items() if k not in CHAIN_FIELDS}))


def _error_code(result: CallToolResult) -> str | None:
    if not result.is_error:
        return None
    return error_of(result)["code"]


@pytest.fixture
def flaky(tmp_path: Path) -> FlakySink:
    return FlakySink(JsonlSink(tmp_path / "audit.jsonl"))


async def test_fail_closed_refuses_the_call_and_the_tool_never_runs(
    flaky: FlakySink, caplog: pytest.LogCaptureFixture
) -> None:
    audit, tool, chain = _chain(flaky, AuditOptions(retry_interval=0))
    flaky.down = True
    with caplog.at_level(logging.ERROR, logger="mcplane.audit"):
        result = await chain(_call())
    assert _error_code(result) == "dependency_unavailable"
    assert error_of(result)["retryable"] is True
    assert tool.runs == 0
    assert audit.writer.buffered == 0
    assert not audit.writer.healthy
    [(_, content)] = _logged(caplog)
    assert content["status"] == "pending"
    assert "call refused" in caplog.records[-1].getMessage()
    flaky.down = False
    assert _error_code(await chain(_call(1))) is None
    assert tool.runs == 1
    assert audit.writer.healthy


async def test_fail_closed_returns_the_result_of_a_call_that_ran_and_buffers_its_outcome(
    flaky: FlakySink, caplog: pytest.LogCaptureFixture
) -> None:
    audit, tool, _ = _chain(flaky, AuditOptions(retry_interval=0))

    async def provider_then_outage(call: Call) -> CallToolResult:
        result = await tool(call)
        flaky.down = True  # the store goes away while the tool runs
        return result

    with caplog.at_level(logging.ERROR, logger="mcplane.audit"):
        result = await audit(_call(1), provider_then_outage)
    assert _error_code(result) is None
    assert tool.runs == 1
    assert audit.writer.buffered == 1
    [(logged_hash, content)] = _logged(caplog)
    assert (content["status"], content["correlation_id"]) == ("ok", "c1")
    flaky.down = False
    await audit(_call(2), tool)
    lines = await flaky.read_lines()
    assert verify_lines(lines).ok
    assert [orjson.loads(line)["status"] for line in lines] == ["pending", "ok", "pending", "ok"]
    assert _content_hash(lines[1]) == logged_hash
    assert audit.writer.buffered == 0
    assert audit.writer.healthy


async def test_fail_open_runs_calls_logs_and_buffers_then_flushes_in_order(
    flaky: FlakySink, caplog: pytest.LogCaptureFixture
) -> None:
    audit, tool, chain = _chain(flaky, AuditOptions(fail_open=True, retry_interval=0))
    await chain(_call(0))
    flaky.down = True
    with caplog.at_level(logging.ERROR, logger="mcplane.audit"):
        for n in (1, 2, 3):
            assert _error_code(await chain(_call(n))) is None
    assert tool.runs == 4
    assert audit.writer.buffered == 6
    logged = _logged(caplog)
    assert [c["correlation_id"] for _, c in logged] == ["c1", "c1", "c2", "c2", "c3", "c3"]
    flaky.down = False
    assert await audit.writer.flush()
    lines = await flaky.read_lines()
    report = verify_lines(lines)
    assert report.ok
    assert report.count == 8
    assert [_content_hash(line) for line in lines[2:]] == [h for h, _ in logged]
    assert audit.writer.healthy


async def test_fail_open_refuses_new_calls_once_the_buffer_is_full(flaky: FlakySink) -> None:
    audit, tool, chain = _chain(flaky, AuditOptions(fail_open=True, buffer_size=2, retry_interval=0))
    flaky.down = True
    assert _error_code(await chain(_call(1))) is None
    assert audit.writer.buffered == 2
    assert _error_code(await chain(_call(2))) == "dependency_unavailable"
    assert tool.runs == 1
    assert audit.writer.buffered == 2
    flaky.down = False
    assert _error_code(await chain(_call(3))) is None
    assert verify_lines(await flaky.read_lines()).count == 4


async def test_after_a_failure_the_sink_rests_for_the_retry_interval(flaky: FlakySink) -> None:
    clock = ManualClock()
    _, tool, chain = _chain(flaky, AuditOptions(retry_interval=5.0, clock=clock))
    flaky.down = True
    await chain(_call(1))
    assert flaky.attempts == 1
    flaky.down = False
    assert _error_code(await chain(_call(2))) == "dependency_unavailable"
    assert flaky.attempts == 1  # refused without waiting on the sink
    clock.advance(5.0)
    assert _error_code(await chain(_call(3))) is None
    assert tool.runs == 1


async def test_a_hung_sink_counts_as_failed_after_the_write_timeout(tmp_path: Path) -> None:
    class HungSink(FlakySink):
        async def append(self, entries: Any) -> list[dict[str, Any]]:
            await anyio.Event().wait()
            raise AssertionError("unreachable")

    _, tool, chain = _chain(HungSink(JsonlSink(tmp_path / "a.jsonl")), AuditOptions(write_timeout=0.05))
    with anyio.fail_after(5):
        assert _error_code(await chain(_call())) == "dependency_unavailable"
    assert tool.runs == 0


async def test_close_flushes_the_buffer_or_says_what_is_left(
    flaky: FlakySink, caplog: pytest.LogCaptureFixture
) -> None:
    audit, _, chain = _chain(flaky, AuditOptions(fail_open=True, retry_interval=0))
    flaky.down = True
    await chain(_call(1))
    with caplog.at_level(logging.ERROR, logger="mcplane.audit"):
        await audit.aclose()
    assert "2 buffered records could not be written" in caplog.records[-1].getMessage()
    flaky.down = False
    await audit.aclose()
    assert verify_lines(await flaky.read_lines()).count == 2


async def _back_then_rows(
    secrets: Secrets, environ: dict[str, str], dsn: str, table: str, audit: AuditMiddleware, chain: Any
) -> list[str]:
    """Point the sink's DSN at the real server, make call 3 (it runs), close the slot; the table's rows."""
    environ["AUDIT_DSN"] = dsn  # the same sink, pointed at the real server
    assert secrets.refresh() == []
    assert _error_code(await chain(_call(3))) is None
    await audit.aclose()
    reader = PostgresSink(dsn, table=table)
    try:
        return await reader.read_lines()
    finally:
        await reader.aclose()


async def test_fail_open_with_postgres_unreachable_then_back(
    postgres_dsn: str, pg_table: str, caplog: pytest.LogCaptureFixture
) -> None:
    environ = {"AUDIT_DSN": f"postgresql://postgres@127.0.0.1:{free_port()}/test"}
    secrets = Secrets(environ=environ)
    dsn = secrets.secret("${env:AUDIT_DSN}")
    sink = PostgresSink(dsn, table=pg_table, connect_timeout=2)
    audit, tool, chain = _chain(sink, AuditOptions(fail_open=True, retry_interval=0))
    with caplog.at_level(logging.ERROR, logger="mcplane.audit"):
        for n in (1, 2):
            assert _error_code(await chain(_call(n))) is None
    assert tool.runs == 2
    assert audit.writer.buffered == 4
    logged = _logged(caplog)
    assert len(logged) == 4
    assert all("OperationalError" in r.getMessage() for r in caplog.records if r.name == "mcplane.audit")

    lines = await _back_then_rows(secrets, environ, postgres_dsn, pg_table, audit, chain)
    report = verify_lines(lines, unit="row")
    assert report.ok, report.render()
    assert report.count == 6
    assert [_content_hash(line) for line in lines[:4]] == [h for h, _ in logged]


async def test_fail_closed_with_postgres_unreachable(postgres_dsn: str, pg_table: str) -> None:
    sink = PostgresSink(f"postgresql://postgres@127.0.0.1:{free_port()}/test", table=pg_table, connect_timeout=2)
    _, tool, chain = _chain(sink)
    result = await chain(_call())
    assert _error_code(result) == "dependency_unavailable"
    assert tool.runs == 0
    with pytest.raises(DependencyUnavailable):
        await AuditMiddleware(sink, AuditOptions(retry_interval=0))(_call(), tool)
    assert tool.runs == 0


async def test_flush_pings_a_failed_sink_so_readiness_sees_it_recover(flaky: FlakySink) -> None:
    audit, tool, chain = _chain(flaky, AuditOptions(retry_interval=3600))
    flaky.down = True
    assert _error_code(await chain(_call(1))) == "dependency_unavailable"
    assert audit.writer.buffered == 0
    assert not await audit.writer.flush()  # nothing buffered: a ping, which fails
    flaky.down = False
    assert await audit.writer.flush()
    assert audit.writer.healthy
    assert _error_code(await chain(_call(2))) is None  # no waiting out the retry interval
    assert tool.runs == 1


# ---------------------------------------------------------------- one record per call (``pending=False``)
def _statuses(lines: list[str]) -> list[tuple[str, str]]:
    return [(record["status"], record["correlation_id"]) for record in map(orjson.loads, lines)]


async def test_one_record_per_call_writes_only_the_outcome(flaky: FlakySink) -> None:
    audit, tool, chain = _chain(flaky, AuditOptions(pending=False))
    for n in (1, 2):
        assert _error_code(await chain(_call(n))) is None
    lines = await flaky.read_lines()
    assert verify_lines(lines).ok
    assert _statuses(lines) == [("ok", "c1"), ("ok", "c2")]
    assert flaky.attempts == 2  # one write per call
    assert tool.runs == 2
    assert audit.writer.healthy


async def test_one_record_per_call_fail_closed_refuses_the_calls_after_a_failed_write(
    flaky: FlakySink, caplog: pytest.LogCaptureFixture
) -> None:
    audit, tool, chain = _chain(flaky, AuditOptions(pending=False, retry_interval=0))
    flaky.down = True
    with caplog.at_level(logging.ERROR, logger="mcplane.audit"):
        first = await chain(_call(1))  # nothing said the log was down: it runs, its outcome is kept
        second = await chain(_call(2))  # the sink is tried again (no retry interval), still down: refused
    assert _error_code(first) is None
    assert _error_code(second) == "dependency_unavailable"
    assert tool.runs == 1
    assert audit.writer.buffered == 1
    [(kept_hash, kept), (_, refused)] = _logged(caplog)
    assert (kept["status"], kept["correlation_id"]) == ("ok", "c1")
    assert (refused["status"], refused["error_code"], refused["correlation_id"]) == (
        "error",
        "dependency_unavailable",
        "c2",
    )
    assert "call refused" in caplog.records[-1].getMessage()
    flaky.down = False
    assert _error_code(await chain(_call(3))) is None  # the kept outcome goes first, then this call's
    lines = await flaky.read_lines()
    assert verify_lines(lines).ok
    assert _statuses(lines) == [("ok", "c1"), ("ok", "c3")]
    assert _content_hash(lines[0]) == kept_hash
    assert tool.runs == 2
    assert audit.writer.healthy


async def test_one_record_per_call_refuses_without_touching_a_resting_sink(flaky: FlakySink) -> None:
    clock = ManualClock()
    _, tool, chain = _chain(flaky, AuditOptions(pending=False, retry_interval=5.0, clock=clock))
    flaky.down = True
    assert _error_code(await chain(_call(1))) is None  # runs; its outcome is kept
    assert flaky.attempts == 1
    flaky.down = False
    assert _error_code(await chain(_call(2))) == "dependency_unavailable"
    assert flaky.attempts == 1  # refused without waiting on the sink
    clock.advance(5.0)
    assert _error_code(await chain(_call(3))) is None  # tried again: the kept outcome, then this call's
    assert tool.runs == 2
    assert _statuses(await flaky.read_lines()) == [("ok", "c1"), ("ok", "c3")]


async def test_one_record_per_call_fail_open_runs_calls_until_the_buffer_is_full(flaky: FlakySink) -> None:
    audit, tool, chain = _chain(flaky, AuditOptions(pending=False, fail_open=True, buffer_size=2, retry_interval=0))
    flaky.down = True
    for n in (1, 2):
        assert _error_code(await chain(_call(n))) is None
    assert audit.writer.buffered == 2
    assert _error_code(await chain(_call(3))) == "dependency_unavailable"
    assert tool.runs == 2
    flaky.down = False
    assert _error_code(await chain(_call(4))) is None
    assert _statuses(await flaky.read_lines()) == [("ok", "c1"), ("ok", "c2"), ("ok", "c4")]


async def test_one_record_per_call_refuses_calls_on_a_broken_chain(
    flaky: FlakySink, caplog: pytest.LogCaptureFixture
) -> None:
    class BrokenSink(FlakySink):
        broken: str | None = "record 6 missing"

        async def ping(self) -> None:
            self.attempts += 1
            if self.broken is not None:
                raise ConnectionError(self.broken)

    sink = BrokenSink(flaky.inner)
    _, tool, chain = _chain(sink, AuditOptions(pending=False, retry_interval=0))
    with caplog.at_level(logging.ERROR, logger="mcplane.audit"):
        assert _error_code(await chain(_call(1))) == "dependency_unavailable"
    assert tool.runs == 0
    assert "audit chain broken: record 6 missing" in caplog.records[-1].getMessage()
    sink.broken = None  # repaired
    assert _error_code(await chain(_call(2))) is None
    assert tool.runs == 1


async def test_one_record_per_call_calls_waiting_on_a_retry_take_its_verdict(tmp_path: Path) -> None:
    class SlowFlakySink(FlakySink):
        """Fails while ``down``, each try only once ``go`` is set: callers queue behind the first try."""

        def __init__(self, inner: AuditSink) -> None:
            super().__init__(inner)
            self.go = anyio.Event()

        async def append(self, entries: Any) -> list[dict[str, Any]]:
            await self.go.wait()
            return await super().append(entries)

    clock = ManualClock()
    sink = SlowFlakySink(JsonlSink(tmp_path / "audit.jsonl"))
    _, tool, chain = _chain(sink, AuditOptions(pending=False, retry_interval=5.0, clock=clock))
    sink.down = True
    sink.go.set()
    assert _error_code(await chain(_call(0))) is None  # ran; its outcome is kept for retry
    clock.advance(5.0)
    sink.go = anyio.Event()
    attempts = sink.attempts
    codes: list[str | None] = []

    async def one(n: int) -> None:
        codes.append(_error_code(await chain(_call(n))))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            for n in range(1, 6):
                group.start_soon(one, n)
            await anyio.wait_all_tasks_blocked()
            sink.go.set()
    assert codes == ["dependency_unavailable"] * 5
    assert sink.attempts == attempts + 1  # one retry of the kept record, not one per waiting call
    assert tool.runs == 1


async def test_one_record_per_call_with_postgres_unreachable_then_back(postgres_dsn: str, pg_table: str) -> None:
    environ = {"AUDIT_DSN": f"postgresql://postgres@127.0.0.1:{free_port()}/test"}
    secrets = Secrets(environ=environ)
    sink = PostgresSink(secrets.secret("${env:AUDIT_DSN}"), table=pg_table, connect_timeout=2)
    audit, tool, chain = _chain(sink, AuditOptions(pending=False, retry_interval=0))
    assert _error_code(await chain(_call(1))) is None  # the store's absence shows only at its write
    assert _error_code(await chain(_call(2))) == "dependency_unavailable"
    assert tool.runs == 1
    assert audit.writer.buffered == 1

    lines = await _back_then_rows(secrets, environ, postgres_dsn, pg_table, audit, chain)
    assert verify_lines(lines, unit="row").ok
    assert _statuses(lines) == [("ok", "c1"), ("ok", "c3")]
