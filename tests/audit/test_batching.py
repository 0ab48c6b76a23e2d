"""Throughput without weaker guarantees: group commit in the writer, inline appends in the JSONL sink."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import orjson
import pytest

from mcplane.audit import AuditOptions, JsonlSink, verify_file
from mcplane.audit import jsonl as jsonl_module
from mcplane.audit.writer import AuditWriter
from mcplane.errors import DependencyUnavailable
from tests.audit.conftest import FlakySink, ManualClock

pytestmark = pytest.mark.skipif(os.name != "posix", reason="flock is POSIX-only")


class GatedSink(FlakySink):
    """Holds every append until ``gate`` opens, and records the batches it was given."""

    def __init__(self, inner: JsonlSink) -> None:
        super().__init__(inner)
        self.gate = anyio.Event()
        self.batches: list[list[Any]] = []

    async def append(self, entries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        self.batches.append([entry["n"] for entry in entries])
        await self.gate.wait()
        return await super().append(entries)


@pytest.fixture
def thread_hops(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of every function the JSONL sink sends to a worker thread."""
    hops: list[str] = []
    real = anyio.to_thread.run_sync

    async def counting(func: Any, *args: Any, **kwargs: Any) -> Any:
        hops.append(func.__name__)
        return await real(func, *args, **kwargs)

    monkeypatch.setattr(jsonl_module.anyio.to_thread, "run_sync", counting)
    return hops


async def test_records_that_arrive_during_a_write_go_in_the_next_batch_in_order(tmp_path: Path) -> None:
    sink = GatedSink(JsonlSink(tmp_path / "audit.jsonl"))
    writer = AuditWriter(sink)
    async with anyio.create_task_group() as group:
        for n in range(6):
            group.start_soon(writer.write_pending, {"n": n})
            await anyio.wait_all_tasks_blocked()
        sink.gate.set()
    assert sink.batches == [[0], [1, 2, 3, 4, 5]]
    lines = [orjson.loads(line) for line in await sink.read_lines()]
    assert [line["n"] for line in lines] == [0, 1, 2, 3, 4, 5]
    assert [line["seq"] for line in lines] == [1, 2, 3, 4, 5, 6]
    await writer.aclose()


async def test_a_failed_batch_is_handled_record_by_record(tmp_path: Path) -> None:
    sink = GatedSink(JsonlSink(tmp_path / "audit.jsonl"))
    writer = AuditWriter(sink, AuditOptions(fail_open=True, buffer_size=2, retry_interval=0))
    sink.down = True
    refused: list[int] = []

    async def pending(n: int) -> None:
        try:
            await writer.write_pending({"n": n})
        except DependencyUnavailable:
            refused.append(n)

    async with anyio.create_task_group() as group:
        group.start_soon(pending, 0)
        await anyio.wait_all_tasks_blocked()
        for n in (1, 2, 3):
            group.start_soon(pending, n)
        group.start_soon(writer.write_outcome, {"n": 4})
        await anyio.wait_all_tasks_blocked()
        sink.gate.set()
    # Fail-open keeps pending records while the buffer has room, refuses the rest; outcomes are always kept.
    assert sink.batches == [[0], [0, 1, 2, 3, 4]]
    assert refused == [2, 3]
    assert [entry["n"] for entry in writer._buffer] == [0, 1, 4]
    sink.down = False
    assert await writer.flush()
    assert [orjson.loads(line)["n"] for line in await sink.read_lines()] == [0, 1, 4]
    await writer.aclose()


@pytest.mark.parametrize("fsync", ["interval", "never"])
async def test_appends_that_need_no_fsync_run_inline(
    tmp_path: Path, thread_hops: list[str], fsync: jsonl_module.FsyncPolicy
) -> None:
    clock = ManualClock()
    path = tmp_path / "audit.jsonl"
    sink = JsonlSink(path, fsync=fsync, fsync_interval=1.0, clock=clock)
    for i in range(5):
        await sink.append([{"i": i}])
    assert thread_hops == ["_append_sync"]  # only the first: it opens (and creates) the file
    clock.advance(1.0)
    await sink.append([{"i": 5}])
    await sink.append([{"i": 6}])
    if fsync == "interval":  # the fsync that fell due runs in the worker thread, the next append inline again
        assert thread_hops == ["_append_sync", "_append_sync"]
    else:
        assert thread_hops == ["_append_sync"]
    await sink.aclose()
    report = verify_file(path)
    assert (report.ok, report.count) == (True, 7), report.render()


async def test_fsync_always_never_writes_inline(tmp_path: Path, thread_hops: list[str]) -> None:
    sink = JsonlSink(tmp_path / "audit.jsonl", fsync="always")
    for i in range(3):
        await sink.append([{"i": i}])
    await sink.aclose()
    assert thread_hops == ["_append_sync"] * 3 + ["_close_sync"]


async def test_an_inline_append_waits_in_a_thread_when_another_process_holds_the_lock(
    tmp_path: Path, thread_hops: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JsonlSink(path, fsync="never")
    await sink.append([{"i": 0}])
    in_thread = anyio.Event()
    counting = jsonl_module.anyio.to_thread.run_sync

    async def signalling(func: Any, *args: Any, **kwargs: Any) -> Any:
        in_thread.set()
        return await counting(func, *args, **kwargs)

    monkeypatch.setattr(jsonl_module.anyio.to_thread, "run_sync", signalling)
    other = os.open(path.with_name("audit.jsonl.lock"), os.O_RDWR)
    try:
        fcntl.flock(other, fcntl.LOCK_EX)  # another process appending (flock locks are per open file)
        async with anyio.create_task_group() as group:
            group.start_soon(sink.append, [{"i": 1}])
            with anyio.fail_after(5):
                await in_thread.wait()  # the inline attempt gave up: the append waits in a worker thread
            fcntl.flock(other, fcntl.LOCK_UN)
    finally:
        os.close(other)
    assert thread_hops == ["_append_sync", "_append_sync"]
    await sink.aclose()
    assert verify_file(path).count == 2


async def test_a_segment_another_writer_rotated_is_reopened_off_the_event_loop(
    tmp_path: Path, thread_hops: list[str]
) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JsonlSink(path, fsync="never")
    await sink.append([{"i": 0}])
    other = JsonlSink(path, fsync="never", rotate_bytes=1)  # another process, rotating at once
    await other.append([{"i": 1}])
    await other.aclose()
    assert (tmp_path / "audit-000000000001.jsonl").exists()
    thread_hops.clear()
    records = await sink.append([{"i": 2}])
    assert records[0]["seq"] == 3
    assert thread_hops == ["_append_sync"]  # the inline attempt saw the new file and gave up
    await sink.aclose()


async def test_the_writer_appends_without_waiting_when_the_sink_can(tmp_path: Path, thread_hops: list[str]) -> None:
    path = tmp_path / "audit.jsonl"
    writer = AuditWriter(JsonlSink(path, fsync="never"))
    await writer.write_pending({"n": 0})  # opens the file: a worker thread
    for n in range(1, 4):
        await writer.write_pending({"n": n})
        await writer.write_outcome({"n": n})
    assert thread_hops == ["_append_sync"]
    await writer.aclose()
    report = verify_file(path)
    assert (report.ok, report.count) == (True, 7), report.render()


async def test_a_failing_append_without_waiting_follows_the_failure_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "audit.jsonl"
    writer = AuditWriter(JsonlSink(path, fsync="never"), AuditOptions(retry_interval=0))
    await writer.write_pending({"n": 0})
    real_write = os.write

    def full_disk(fd: int, data: bytes | memoryview) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(jsonl_module.os, "write", full_disk)
    with pytest.raises(DependencyUnavailable):  # fail closed: the call is refused
        await writer.write_pending({"n": 1})
    await writer.write_outcome({"n": 0})  # an outcome is kept for retry
    assert writer.buffered == 1
    assert not writer.healthy
    monkeypatch.setattr(jsonl_module.os, "write", real_write)
    await writer.write_pending({"n": 2})  # the buffered outcome goes first
    assert writer.healthy
    await writer.aclose()
    assert [orjson.loads(line)["n"] for line in path.read_text().splitlines()] == [0, 0, 2]


async def test_a_caller_passing_through_the_lock_does_not_stop_appends_without_waiting(
    tmp_path: Path, thread_hops: list[str]
) -> None:
    path = tmp_path / "audit.jsonl"
    writer = AuditWriter(JsonlSink(path, fsync="never"))
    await writer.write_pending({"n": 0})  # opens the file: a worker thread
    # A caller whose record an earlier holder wrote with its batch takes the lock only to see it done:
    # nothing is queued or being written, so a new record still goes without waiting.
    async with writer._lock:
        with anyio.fail_after(5):
            await writer.write_pending({"n": 1})
    assert thread_hops == ["_append_sync"]
    await writer.aclose()
    assert verify_file(path).count == 2
