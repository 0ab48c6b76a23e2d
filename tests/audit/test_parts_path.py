"""The audit slot's plain-call path (records written as canonical text, ``append_parts_nowait``) against
the general path (records built as mappings and sealed by the writer and sink): the same log, byte for byte;
and the plain path taken exactly when it may be."""

from __future__ import annotations

import asyncio
import datetime as dt
import fcntl
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, TextContent

import mcplane.audit.entry as entry_module
import mcplane.middleware.audit as audit_module
from mcplane import Context, Forbidden, Principal
from mcplane.audit import AuditOptions, JsonlSink, verify_file
from mcplane.audit.chain import canonical, seal_line, seal_parts
from mcplane.audit.checkpoint import CheckpointOptions
from mcplane.audit.commands import verify_main
from mcplane.audit.entry import call_text
from mcplane.errors import DependencyUnavailable
from mcplane.middleware.audit import AuditMiddleware
from mcplane.notes import note
from mcplane.pipeline import Call

from .conftest import ManualClock

CHECKPOINTS = CheckpointOptions()


class CountingSink(JsonlSink):
    """The JSONL sink, counting what each path was asked to do."""

    def __init__(self, path: str | os.PathLike[str], **options: Any) -> None:
        super().__init__(path, **options)
        self.parts: list[bool] = []
        """What each ``append_parts_nowait`` answered (``True``: written)."""
        self.mappings = 0
        """Records handed to ``append_nowait`` / ``append`` (the general path)."""
        self.lease_ended = asyncio.Event()
        """Set each time the inline lease ends (its loop timer, or a release before a worker thread)."""

    def _end_lease(self) -> None:
        held = self._lease_since is not None
        super()._end_lease()
        if held:
            self.lease_ended.set()

    async def lease_over(self) -> None:
        """Wait (at most 10 s) until no inline lease is held: the lease's timer has run."""
        with anyio.fail_after(10):
            while self._lease_since is not None:
                self.lease_ended.clear()
                await self.lease_ended.wait()

    def append_parts_nowait(self, head: str, middle: str, rest: str, tail: str, time: str) -> bool:
        written = super().append_parts_nowait(head, middle, rest, tail, time)
        self.parts.append(written)
        return written

    def append_nowait(self, entries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]] | None:
        records = super().append_nowait(entries)
        if records is not None:
            self.mappings += len(entries)
        return records

    async def append(self, entries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        records = await super().append(entries)
        self.mappings += len(entries)
        return records


class GeneralSink:
    """A JSONL sink seen without ``append_parts_nowait``: every record takes the general path."""

    def __init__(self, inner: JsonlSink) -> None:
        self.inner = inner

    @property
    def description(self) -> str:
        return self.inner.description

    @property
    def broken(self) -> str | None:
        return self.inner.broken

    async def append(self, entries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        return await self.inner.append(entries)

    def append_nowait(self, entries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]] | None:
        return self.inner.append_nowait(entries)

    async def checkpoint(self) -> None:
        await self.inner.checkpoint()

    async def ping(self) -> None:
        await self.inner.ping()

    async def read_lines(self) -> list[str]:
        return await self.inner.read_lines()

    async def aclose(self) -> None:
        await self.inner.aclose()


class Fixed:
    """The slot's clock, wall time and call ids, the same for two runs."""

    def __init__(self) -> None:
        self.ticks = 0
        self.ids = 0
        self.counter = 12.5

    def utc_now(self) -> str:
        self.ticks += 1
        return f"2026-12-07T02:{self.ticks // 60 % 60:02d}:{self.ticks % 60:02d}.{self.ticks * 37 % 1000:03d}Z"

    def new_call_id(self) -> str:
        self.ids += 1
        return f"{self.ids:032x}"

    def perf_counter(self) -> float:
        self.counter += 0.000123456 * (self.ticks % 7 + 1) + (1e9 if self.ticks % 11 == 10 else 0.0)
        return self.counter


@pytest.fixture
def fixed(monkeypatch: pytest.MonkeyPatch) -> Fixed:
    made = Fixed()
    monkeypatch.setattr(audit_module, "utc_now", made.utc_now)
    monkeypatch.setattr(audit_module, "new_call_id", made.new_call_id)
    monkeypatch.setattr(audit_module, "time", SimpleNamespace(perf_counter=made.perf_counter))
    return made


@dataclass
class Step:
    """One call through the slot and what happens inside it."""

    name: str = "charge"
    arguments: Any = field(default_factory=lambda: {"amount": 5})
    subject: str = "alice"
    tenant: str | None = "acme"
    correlation_id: Any = "cid-1"
    headers: list[tuple[bytes, bytes]] = field(default_factory=list[tuple[bytes, bytes]])
    client: tuple[str, int] | None = ("10.0.0.1", 4000)
    session_id: str | None = None
    kind: str = "tool"
    outcome: str = "ok"
    """``ok``, ``tool_error``, ``raise``, ``mcp_error``, ``crash``, ``cancel``."""
    code: Any = "refund_too_large"
    text: str = "done"
    notes: dict[str, Any] = field(default_factory=dict[str, Any])

    def call(self) -> Call:
        scope = {"type": "http", "headers": self.headers, "client": self.client}
        context = Context(
            principal=Principal(subject=self.subject, tenant=self.tenant),
            correlation_id=self.correlation_id,
            scope=scope,
            session_id=self.session_id,
        )
        return Call(self.kind, self.name, self.arguments, context)  # pyright: ignore[reportArgumentType]

    async def run(self, call: Call) -> Any:
        for key, value in self.notes.items():
            note(call.context, key, value)
        if self.outcome == "raise":
            raise Forbidden("no")
        if self.outcome == "mcp_error":
            raise MCPError(code=-32602, message="bad", data={"code": self.code})
        if self.outcome == "crash":
            raise ValueError("boom")
        if self.outcome == "cancel":
            raise anyio.get_cancelled_exc_class()()
        if self.outcome == "tool_error":
            return CallToolResult(
                content=[TextContent(type="text", text=self.text)],
                is_error=True,
                _meta={"mcplane/error": {"code": self.code}},
            )
        return CallToolResult(
            content=[TextContent(type="text", text=self.text)], structured_content={"result": self.text}
        )


async def drive(sink: Any, steps: Sequence[Step], options: AuditOptions | None = None) -> None:
    audit = AuditMiddleware(sink, options or AuditOptions(trusted_proxies=("10.0.0.0/8",)))
    for step in steps:
        try:
            await audit(step.call(), step.run)
        except BaseException as exc:  # what the step raised, re-raised by the slot
            if isinstance(exc, DependencyUnavailable):
                raise
    await audit.aclose()


def both_ways(
    directory: Path, steps: Sequence[Step], fixed: Fixed, audit: AuditOptions | None = None, **options: Any
) -> tuple[bytes, CountingSink]:
    """The log the steps leave through the plain path and through the general path: the same bytes."""
    logs: list[bytes] = []
    plain = CountingSink(directory / "plain" / "audit.jsonl", fsync="interval", checkpoints=CHECKPOINTS, **options)
    for sink in (plain, GeneralSink(JsonlSink(directory / "general" / "audit.jsonl", fsync="interval", **options))):
        fixed.__init__()
        anyio.run(drive, sink, steps, audit)
    for name in ("plain", "general"):
        files = sorted((directory / name).glob("audit*.jsonl"))  # the sealed segments, then the active one
        logs.append(b"".join(path.read_bytes() for path in files))
        if len(files) == 1:
            report = verify_file(files[0])
            assert report.ok, report.render()
    assert logs[0] == logs[1]
    assert verify_main([str(directory / "plain")]) == 0
    return logs[0], plain


def _lines(data: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in data.split(b"\n") if line]


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


FORWARDED = [(b"x-forwarded-for", b"203.0.113.7, 10.0.0.9"), (b"User-Agent", b'agent "q" \\ \x01 \xff\xfe')]
TRACE = [(b"traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), (b"user-agent", b"curl/8")]
HOSTILE_STEPS = [
    Step(),
    Step(outcome="tool_error"),
    Step(outcome="raise"),
    Step(outcome="mcp_error", code='invalid\u2028code "q" \\ \x00'),
    Step(outcome="crash"),
    Step(outcome="cancel"),
    Step(outcome="tool_error", code="\ud800 lone"),
    Step(outcome="tool_error", code=17),
    Step(notes={"denied_by": "rule", "guards": {"email": 2}, "guard_action": "mask", "status": "kept out"}),
    Step(name='na\u00efve \u2603 \U0001f600 "quoted" \\ \x00 \x1f \u2028 \ud800', subject="\u00e9l\u00e8ve \ud83d"),
    Step(name="x" * 5000, tenant=None, subject="s" * 400),
    Step(arguments={"deep": _nested(300)}),
    Step(arguments={"big": 2**200, "s": "\ud800", "n": None, "f": 1.5, "k": list(range(3000))}),
    Step(arguments={"huge": "y" * 200_000, "nested": {"a": {"b": {"hash": "0" * 64}}}}),
    Step(headers=FORWARDED, client=("10.1.2.3", 5)),
    Step(headers=TRACE, session_id="sess-\u00e9-" + "z" * 2000),
    Step(correlation_id='cid "q" \\ \u2603'),
    Step(correlation_id="cid \ud800"),
    Step(correlation_id=12345),
    Step(kind="resource", name="file:///x"),
    Step(text="\ud800 result"),
]


def test_the_plain_path_and_the_general_path_write_the_same_log(tmp_path: Path, fixed: Fixed) -> None:
    data, plain = both_ways(tmp_path, HOSTILE_STEPS, fixed)
    records = _lines(data)
    assert len(records) == 2 * len(HOSTILE_STEPS)
    assert any(plain.parts)
    assert plain.mappings > 0
    assert not all(plain.parts) or plain.parts.count(True) < len(records)
    noted = records[17]
    assert (noted["denied_by"], noted["guard_action"], noted["status"]) == ("rule", "mask", "ok")


def test_one_record_per_call_writes_the_same_log_on_both_paths(tmp_path: Path, fixed: Fixed) -> None:
    options = AuditOptions(trusted_proxies=("10.0.0.0/8",), pending=False)
    data, plain = both_ways(tmp_path, HOSTILE_STEPS, fixed, options)
    records = _lines(data)
    assert len(records) == len(HOSTILE_STEPS)
    assert "pending" not in {record["status"] for record in records}
    assert len({record["call_id"] for record in records}) == len(HOSTILE_STEPS)
    assert plain.parts.count(True) > len(HOSTILE_STEPS) // 2


def test_a_long_run_of_plain_calls_writes_the_same_log(tmp_path: Path, fixed: Fixed) -> None:
    steps = [Step(arguments={"i": i}, outcome=("ok", "tool_error", "crash")[i % 3]) for i in range(300)]
    data, plain = both_ways(tmp_path, steps, fixed)
    assert len(_lines(data)) == 600
    assert plain.parts.count(True) >= 590  # all but the log's first (its "open" checkpoint) and a few around it


def test_rotation_and_checkpoints_on_both_paths_write_the_same_log(tmp_path: Path, fixed: Fixed) -> None:
    steps = [Step(arguments={"i": i}, name=f"t{i % 4}") for i in range(120)]
    _data, plain = both_ways(tmp_path, steps, fixed, rotate_bytes=8_000)
    assert False in plain.parts
    assert True in plain.parts
    segments = sorted((tmp_path / "plain").glob("audit-*.jsonl"))
    assert segments
    assert verify_main([str(tmp_path / "plain")]) == 0


_TEXT = st.text(
    st.characters(codec="utf-8") | st.sampled_from(["\ud800", "\udfff", '"', "\\", "\x00", "\u2028"]), max_size=40
)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | _TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_TEXT, children, max_size=4),
    max_leaves=20,
)
_STEP = st.builds(
    Step,
    name=_TEXT,
    arguments=st.dictionaries(_TEXT, _JSON, max_size=4),
    subject=_TEXT,
    tenant=st.none() | _TEXT,
    correlation_id=_TEXT,
    headers=st.lists(
        st.tuples(
            st.sampled_from([b"user-agent", b"User-Agent", b"traceparent", b"x-forwarded-for", b"x-other"]),
            st.binary(max_size=40),
        ),
        max_size=4,
    ),
    client=st.none() | st.just(("10.0.0.1", 1)) | st.just(("192.0.2.1", 2)),
    session_id=st.none() | _TEXT,
    outcome=st.sampled_from(["ok", "tool_error", "raise", "mcp_error", "crash", "cancel"]),
    code=_TEXT | st.integers(),
    text=_TEXT,
    notes=st.dictionaries(st.sampled_from(["denied_by", "guards", "time", "hash", "zeta"]), _JSON, max_size=2),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(_STEP, min_size=1, max_size=6))
def test_made_up_calls_write_the_same_log_on_both_paths(fixed: Fixed, steps: list[Step]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        both_ways(Path(directory), steps, fixed)


@given(
    entry=st.dictionaries(st.sampled_from(["a", "duration_ms", "kind", "result_sha256", "time", "z"]), _JSON),
    seq=st.integers(min_value=1, max_value=2**63 - 1),
    prev=st.text("0123456789abcdef", min_size=64, max_size=64),
)
def test_seal_parts_gives_seal_lines_line(entry: dict[str, Any], seq: int, prev: str) -> None:
    record, line = seal_line(entry, seq, prev)
    text = line.decode()
    hash_member, prev_member, seq_member = f'"hash":"{record["hash"]}",', f'"prev_hash":"{prev}",', f'"seq":{seq},'
    hash_at, prev_at, seq_at = text.find(hash_member), text.find(prev_member), text.find(seq_member)
    head = text[:hash_at]
    middle = text[hash_at + len(hash_member) : prev_at]
    rest = text[prev_at + len(prev_member) : seq_at]
    tail = text[seq_at + len(seq_member) :]
    if any(key in head + middle + rest + tail for key in ('"hash":', '"prev_hash":', '"seq":')):
        return  # a member of the entry holds the chain members' text: not a cut this test can make
    sealed = seal_parts(head, middle, rest, tail, seq, prev)
    assert sealed == (record["hash"], line + b"\n")


def test_seal_parts_leaves_a_head_it_would_not_write_as_orjson_does_to_seal_line() -> None:
    assert seal_parts("{", "", "", '"v":1}', 1, "0" * 63 + '"') is None
    assert seal_parts("{", "", "", '"v":1}', 1, "a" * 63) is None
    assert seal_parts("{", "", "", '"v":1}', 2**63, "a" * 64) is None
    assert seal_parts("{", "", "", '"v":1}', 0, "a" * 64) is None


def test_call_text_is_the_canonical_text_of_the_shared_fields() -> None:
    base = {
        "call_id": "c" * 32,
        "subject": '\u00e9 "q" \\',
        "tenant": None,
        "kind": "tool",
        "name": ',"kind":"x","session_id":',
        "args_sha256": "a" * 64,
        "client_ip": "",
        "user_agent": ',"trace_id":',
        "trace_id": "",
        "correlation_id": ',"subject":',
        "session_id": "\u2028",
    }
    parts = call_text(base)
    assert parts is not None
    assert "".join(parts) + "}" == canonical(base).decode()
    assert parts[1].startswith('"kind":')
    assert parts[2].startswith('"session_id":')
    assert parts[3].startswith('"subject":')
    assert parts[4].startswith('"trace_id":')
    assert call_text({**base, "correlation_id": 5}) is None
    assert call_text({**base, "correlation_id": "\ud800"}) is None


# ---------------------------------------------------------------------------- when the plain path is taken


@dataclass
class Rig:
    sink: CountingSink
    audit: AuditMiddleware
    clock: ManualClock

    async def call(self, step: Step | None = None) -> None:
        step = step or Step()
        await self.audit(step.call(), step.run)

    def lines(self) -> list[dict[str, Any]]:
        return _lines(self.sink.path.read_bytes())

    async def ways(self, step: Step) -> tuple[list[bool], int]:
        """After a first call: how ``step``'s records were written (plain-path appends, mapping appends)."""
        await self.call()
        self.sink.parts.clear()
        self.sink.mappings = 0
        await self.call(step)
        return self.sink.parts, self.sink.mappings


def rig(tmp_path: Path, options: AuditOptions | None = None, **sink_options: Any) -> Rig:
    clock = ManualClock()
    sink_options.setdefault("checkpoints", CHECKPOINTS)
    sink = CountingSink(tmp_path / "audit.jsonl", fsync="interval", clock=clock, **sink_options)
    return Rig(sink, AuditMiddleware(sink, options or AuditOptions(clock=clock)), clock)


async def test_a_plain_call_writes_both_records_on_the_plain_path(tmp_path: Path) -> None:
    r = rig(tmp_path)
    await r.call()  # the log's first records: opened (and its checkpoint written) on the general path
    r.sink.parts.clear()
    r.sink.mappings = 0
    for _ in range(5):
        await r.call()
    assert r.sink.parts == [True] * 10
    assert r.sink.mappings == 0
    await r.audit.aclose()
    assert verify_main([str(r.sink.path)]) == 0


async def test_the_plain_path_takes_the_lock_when_no_lease_is_held(tmp_path: Path) -> None:
    r = rig(tmp_path)
    await r.call()
    await r.sink.lease_over()  # the lease's timer ends it
    assert r.sink._lease_since is None  # pyright: ignore[reportPrivateUsage]
    r.sink.parts.clear()
    await r.call()
    assert r.sink.parts == [True, True]
    assert r.sink._lease_since is not None  # pyright: ignore[reportPrivateUsage]
    await r.sink.lease_over()
    await r.audit.aclose()


async def test_notes_send_the_outcome_the_general_way(tmp_path: Path) -> None:
    r = rig(tmp_path)
    assert await r.ways(Step(notes={"denied_by": "rule"})) == ([True], 1)
    assert r.lines()[-1]["denied_by"] == "rule"
    await r.audit.aclose()


async def test_a_correlation_id_that_is_not_text_sends_both_records_the_general_way(tmp_path: Path) -> None:
    r = rig(tmp_path)
    assert await r.ways(Step(correlation_id=7)) == ([], 2)
    await r.audit.aclose()


async def test_a_due_fsync_or_checkpoint_or_rotation_is_left_to_the_general_path(tmp_path: Path) -> None:
    r = rig(tmp_path, checkpoints=CheckpointOptions(every=5), rotate_bytes=3_000)
    await r.call()
    r.sink.parts.clear()
    r.sink.mappings = 0
    r.clock.advance(5.0)  # the fsync interval ran out
    await r.call()
    assert r.sink.parts[0] is False
    assert r.sink.mappings >= 1
    for _ in range(20):  # checkpoints every 5 records, a rotation every few calls
        await r.call()
    assert r.sink.parts.count(False) >= 8
    await r.audit.aclose()
    sealed = await anyio.to_thread.run_sync(lambda: sorted(tmp_path.glob("audit-*.jsonl")))
    assert sealed
    assert len(r.lines()) + sum(len(_lines(path.read_bytes())) for path in sealed) == 44
    assert verify_main([str(tmp_path)]) == 0


async def test_a_lock_held_elsewhere_or_a_peers_append_is_left_to_the_general_path(tmp_path: Path) -> None:
    r = rig(tmp_path, checkpoints=None)
    await r.call()
    await r.sink.lease_over()
    peer = os.open(r.sink.files.lock_path, os.O_RDWR)
    try:
        fcntl.flock(peer, fcntl.LOCK_EX)
        r.sink.parts.clear()
        r.sink.mappings = 0
        async with anyio.create_task_group() as tg:
            tg.start_soon(r.call)
            await anyio.sleep(0.05)
            assert r.sink.parts[:1] == [False]
            fcntl.flock(peer, fcntl.LOCK_UN)
        assert r.sink.mappings >= 1
    finally:
        os.close(peer)
    await r.sink.lease_over()
    # A peer appends a record of its own between two of this sink's appends: read it, link after it.
    other = JsonlSink(r.sink.path, fsync="never", checkpoints=None)
    await other.append([{"peer": True}])
    await other.aclose()
    r.sink.parts.clear()
    r.sink.mappings = 0
    await r.call()
    assert r.sink.parts[0] is False
    assert r.sink.mappings >= 1
    await r.audit.aclose()
    report = verify_file(r.sink.path)
    assert report.ok, report.render()


async def test_buffered_records_and_a_failed_sink_keep_the_plain_path_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = ManualClock()
    r = rig(tmp_path, AuditOptions(fail_open=True, clock=clock, retry_interval=1.0))
    await r.call()
    r.sink.parts.clear()
    r.sink.mappings = 0
    real_write = os.write
    failing = {"on": True}

    def write(fd: int, data: Any) -> int:
        if failing["on"] and fd == r.sink._fd:  # pyright: ignore[reportPrivateUsage]
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    await r.call()  # the pending record fails on the plain path: kept (fail-open), the call runs
    assert r.sink.parts == [] or r.sink.parts[0] is not True
    assert r.audit.writer.buffered == 2
    r.sink.parts.clear()
    await r.call()  # resting after the failure: the sink is not touched
    assert r.sink.parts == []
    assert r.audit.writer.buffered == 4
    failing["on"] = False
    clock.advance(2.0)
    await r.call()  # the buffer goes first, with the pending record, on the general path; then the outcome
    assert r.sink.parts == [True]
    assert r.audit.writer.buffered == 0
    r.sink.parts.clear()
    await r.call()
    assert r.sink.parts == [True, True]
    await r.audit.aclose()
    records = r.lines()
    assert [x["status"] for x in records[2:]] == ["pending", "ok"] * 4
    assert verify_main([str(r.sink.path)]) == 0


async def test_a_pending_record_the_plain_path_cannot_write_refuses_the_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = rig(tmp_path)
    await r.call()
    ran: list[int] = []

    def write(fd: int, data: Any) -> int:
        raise OSError(5, "I/O error")

    monkeypatch.setattr(os, "write", write)

    async def inner(call: Call) -> Any:
        ran.append(1)

    r.sink.parts.clear()
    with pytest.raises(DependencyUnavailable) as caught:
        await r.audit(Step().call(), inner)
    assert caught.value.__context__ is None  # raised as the general path raises it
    assert ran == []
    assert len(r.lines()) == 2  # nothing torn, nothing added
    monkeypatch.undo()
    await r.audit.aclose()


async def test_records_queued_behind_a_write_keep_the_plain_path_off(tmp_path: Path) -> None:
    r = rig(tmp_path)
    await r.call()
    writer = r.audit.writer
    writer._writing = True  # pyright: ignore[reportPrivateUsage]  # a batch being written
    assert writer.append_parts_nowait("{", "", "", "}", "") is False
    writer._writing = False  # pyright: ignore[reportPrivateUsage]
    writer._queue.append(SimpleNamespace())  # pyright: ignore[reportPrivateUsage, reportArgumentType]
    assert writer.append_parts_nowait("{", "", "", "}", "") is False
    writer._queue.clear()  # pyright: ignore[reportPrivateUsage]
    assert r.sink.parts == [False, True]  # the first call's: the log's "open" checkpoint, then the outcome
    await r.audit.aclose()


@given(st.integers(min_value=0, max_value=4_102_444_800 * 10**9 - 1))
def test_utc_now_is_the_iso_text_of_the_wall_clock(now: int) -> None:
    real = entry_module.time
    entry_module.time = SimpleNamespace(time_ns=lambda: now)  # pyright: ignore[reportAttributeAccessIssue]
    try:
        text = entry_module.utc_now()
    finally:
        entry_module.time = real
    second, nanos = divmod(now, 10**9)
    expected = dt.datetime.fromtimestamp(second, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos // 10**6:03d}Z"
    assert text == expected


_HEADER_NAMES = st.sampled_from(
    [
        b"user-agent",
        b"User-Agent",
        b"traceparent",
        b"TRACEPARENT",
        b"x-forwarded-for",
        b"X-Forwarded-For",
        b"host",
        b"1",
    ]
)


@given(headers=st.lists(st.tuples(_HEADER_NAMES | st.binary(max_size=6), st.binary(max_size=12)), max_size=8))
def test_the_header_dict_reads_what_the_header_scan_reads(headers: list[tuple[bytes, bytes]]) -> None:
    scope = {"headers": headers}
    scanned = entry_module._scan_headers(scope)  # pyright: ignore[reportPrivateUsage]
    assert entry_module._scope_headers(scope) == scanned  # pyright: ignore[reportPrivateUsage]
    assert entry_module._scope_headers({"headers": tuple(headers)}) == scanned  # pyright: ignore[reportPrivateUsage]
