"""The JSONL sink's inline lease: the ``flock`` taken by an inline append is kept for the appends of
the next ``LEASE_SECONDS``, in this event-loop turn and later ones (one ``write`` each), released by a
loop timer, by an append that finds it held that long, before any worker-thread hop and at close,
and not kept while a peer process appends; two processes leasing against each other, one rotating,
still write one chain."""

from __future__ import annotations

import asyncio
import fcntl
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import orjson
import pytest

from mcplane.audit import JsonlSink, verify_file
from mcplane.audit import jsonl as jsonl_module
from mcplane.audit.completeness import check, file_source
from mcplane.audit.writer import AuditWriter
from tests.audit.conftest import ManualClock

pytestmark = pytest.mark.skipif(os.name != "posix", reason="flock is POSIX-only")


class Syscalls:
    """Counts the sink's ``flock``, ``stat`` and ``fstat`` calls."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.flock: list[int] = []
        self.stat = 0
        self.fstat = 0
        real_flock, real_stat, real_fstat = fcntl.flock, os.stat, os.fstat

        def flock(fd: int, operation: int) -> None:
            self.flock.append(operation)
            real_flock(fd, operation)

        def stat(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
            self.stat += 1
            return real_stat(path, *args, **kwargs)

        def fstat(fd: int) -> os.stat_result:
            self.fstat += 1
            return real_fstat(fd)

        monkeypatch.setattr(jsonl_module.fcntl, "flock", flock)
        monkeypatch.setattr(jsonl_module.os, "stat", stat)
        monkeypatch.setattr(jsonl_module.os, "fstat", fstat)

    def clear(self) -> None:
        self.flock.clear()
        self.stat = self.fstat = 0


def _free(lock_path: Path) -> bool:
    """Another open file description (as another process) can take the lock now."""
    other = os.open(lock_path, os.O_RDWR)
    try:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(other)  # closing it drops the lock it took
    return True


async def _opened(path: Path, clock: ManualClock | None = None, fsync: jsonl_module.FsyncPolicy = "never") -> JsonlSink:
    sink = JsonlSink(path, fsync=fsync, clock=clock or ManualClock())
    await sink.append([{"i": 0}])  # opens (and creates) the file in a worker thread
    return sink


def _lease_ends(sink: JsonlSink, monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """An event set each time ``sink`` ends its lease (installed before the lease is taken, so its timer calls it)."""
    ended = asyncio.Event()
    end = sink._end_lease

    def end_and_tell() -> None:
        end()
        ended.set()

    monkeypatch.setattr(sink, "_end_lease", end_and_tell)
    return ended


async def test_appends_take_the_lock_once_in_a_lease_that_outlives_the_loop_turn_and_a_timer_releases_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "audit.jsonl"
    lock_path = path.with_name("audit.jsonl.lock")
    sink = await _opened(path)
    ended = _lease_ends(sink, monkeypatch)
    calls = Syscalls(monkeypatch)
    for i in range(1, 6):
        assert sink.append_nowait([{"i": i}]) is not None
    # One acquisition (flock, the rotation check's stat and fstat), then a write per record.
    assert (calls.flock, calls.stat, calls.fstat) == ([fcntl.LOCK_EX | fcntl.LOCK_NB], 1, 1)
    assert not _free(lock_path)  # held across the turn: no peer appends between
    await asyncio.sleep(0)  # the loop's next iterations: the lease is still held (its ManualClock stands still)
    await asyncio.sleep(0)
    assert not ended.is_set()
    assert not _free(lock_path)
    calls.clear()  # (``_free`` took the lock's flock too)
    assert sink.append_nowait([{"i": 6}]) is not None  # a later turn's append: one write, no lock taken
    assert (calls.flock, calls.stat, calls.fstat) == ([], 0, 0)
    with anyio.fail_after(10):
        await ended.wait()  # the loop's timer, LEASE_SECONDS after the lease was taken
    assert calls.flock[-1] == fcntl.LOCK_UN
    assert _free(lock_path)
    await sink.aclose()
    report = verify_file(path)
    assert (report.ok, report.count) == (True, 7), report.render()


async def test_a_released_lease_leaves_no_timer_and_a_stale_timer_releases_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = ManualClock()
    path = tmp_path / "audit.jsonl"
    sink = await _opened(path, clock)
    ended = _lease_ends(sink, monkeypatch)
    assert sink.append_nowait([{"i": 1}]) is not None
    first = sink._lease_timer
    assert first is not None
    assert sink._lease_since is not None
    clock.advance(2 * jsonl_module.LEASE_SECONDS)  # the loop was busy: the next append ends the lease itself
    assert sink.append_nowait([{"i": 2}]) is not None
    assert first.cancelled()  # the first lease's timer cannot end the second lease
    second = sink._lease_timer
    assert second is not None
    assert second is not first
    assert not second.cancelled()
    ended.clear()  # (set when the second append ended the first lease)
    with anyio.fail_after(10):
        await ended.wait()  # the second lease's timer
    assert sink._lease_since is None
    assert sink._lease_timer is None
    assert _free(path.with_name("audit.jsonl.lock"))
    await sink.aclose()
    assert verify_file(path).count == 3


async def test_aclose_releases_the_lease_and_cancels_its_timer(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = await _opened(path)
    assert sink.append_nowait([{"i": 1}]) is not None
    timer = sink._lease_timer
    assert timer is not None
    await sink.aclose()
    assert timer.cancelled()
    assert sink._lease_since is None
    assert _free(path.with_name("audit.jsonl.lock"))


async def test_a_lease_held_for_lease_seconds_is_taken_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = ManualClock()
    path = tmp_path / "audit.jsonl"
    sink = await _opened(path, clock)
    calls = Syscalls(monkeypatch)
    sink.append_nowait([{"i": 1}])
    sink.append_nowait([{"i": 2}])
    clock.advance(2 * jsonl_module.LEASE_SECONDS)
    sink.append_nowait([{"i": 3}])  # released (a waiting peer may take it first), then taken again
    take = fcntl.LOCK_EX | fcntl.LOCK_NB
    assert calls.flock == [take, fcntl.LOCK_UN, take]
    assert calls.stat == 2  # the rotation check again, after the lock was free
    await sink.aclose()
    assert verify_file(path).count == 4


async def test_no_lease_while_another_process_appends(tmp_path: Path) -> None:
    clock = ManualClock()
    path = tmp_path / "audit.jsonl"
    lock_path = path.with_name("audit.jsonl.lock")
    sink = await _opened(path, clock)
    await asyncio.sleep(0)
    other = os.open(lock_path, os.O_RDWR)
    try:
        fcntl.flock(other, fcntl.LOCK_EX)  # a peer process appending
        assert sink.append_nowait([{"i": 1}]) is None  # the inline attempt gives up
        fcntl.flock(other, fcntl.LOCK_UN)
    finally:
        os.close(other)
    assert sink.append_nowait([{"i": 1}]) is not None
    assert _free(lock_path)  # one lock per append while a peer was seen: released at once
    clock.advance(jsonl_module.CONTENDED_SECONDS)
    assert sink.append_nowait([{"i": 2}]) is not None
    assert not _free(lock_path)  # leasing again
    await sink.aclose()
    assert verify_file(path).count == 3


async def test_the_lease_is_released_before_a_worker_thread_takes_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = ManualClock()
    path = tmp_path / "audit.jsonl"
    sink = await _opened(path, clock, fsync="interval")
    held_at_hop: list[bool] = []
    real = anyio.to_thread.run_sync

    async def hop(func: Any, *args: Any, **kwargs: Any) -> Any:
        held_at_hop.append(sink._lease_since is not None)
        return await real(func, *args, **kwargs)

    monkeypatch.setattr(jsonl_module.anyio.to_thread, "run_sync", hop)
    sink.append_nowait([{"i": 1}])
    assert not _free(path.with_name("audit.jsonl.lock"))
    clock.advance(1.0)  # the fsync fell due: the next append goes to a worker thread
    assert sink.append_nowait([{"i": 2}]) is None
    await sink.append([{"i": 2}])
    assert held_at_hop == [False]
    assert _free(path.with_name("audit.jsonl.lock"))
    await sink.aclose()
    assert verify_file(path).count == 3


async def test_the_writer_appends_under_one_lease_per_loop_turn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "audit.jsonl"
    writer = AuditWriter(JsonlSink(path, fsync="never"))
    await writer.write_pending({"n": 0})  # opens the file: a worker thread
    await asyncio.sleep(0)
    calls = Syscalls(monkeypatch)

    async def call(n: int) -> None:
        await writer.write_pending({"n": n})
        await writer.write_outcome({"n": n})

    async with anyio.create_task_group() as group:
        for n in range(1, 9):
            group.start_soon(call, n)
    assert calls.flock.count(fcntl.LOCK_EX | fcntl.LOCK_NB) < 8  # fewer acquisitions than calls
    await writer.aclose()
    report = verify_file(path)
    assert (report.ok, report.count) == (True, 17), report.render()


_LEASING_WRITER = r"""
import sys

import anyio
import anyio.lowlevel

from mcplane.audit import jsonl
from mcplane.audit.writer import AuditWriter


async def main(target: str, name: str, count: int, rotate_bytes: int, tasks: int) -> None:
    jsonl.CONTENDED_SECONDS = 0.0  # lease even while the peer appends: the hardest case for one chain
    sink = jsonl.JsonlSink(target, fsync="never", rotate_bytes=rotate_bytes or None)
    leased = 0
    real = sink._append_leased

    def counting(fd, entries):
        nonlocal leased
        leased += 1
        return real(fd, entries)

    sink._append_leased = counting
    writer = AuditWriter(sink)
    await writer.write_pending({"writer": name, "i": -1})
    print("ready", flush=True)
    sys.stdin.readline()

    async def run(first: int) -> None:
        for i in range(first, count, tasks):
            await writer.write_pending({"writer": name, "i": i})
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as group:
        for first in range(tasks):
            group.start_soon(run, first)
    await writer.aclose()
    print(leased, flush=True)


anyio.run(main, sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
"""


def _run_leasing_writers(target: Path, count: int, rotate_bytes: int) -> list[int]:
    """Two writer processes, released together; how many appends each made under a lease."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _LEASING_WRITER, str(target), f"w{k}", str(count), str(rotate_bytes), "4"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(2)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stderr is not None
            assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        leased: list[int] = []
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            leased.append(int(out.split()[-1]))
        return leased
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.parametrize("rotate_bytes", [0, 4096])
def test_two_leasing_processes_write_one_chain(tmp_path: Path, rotate_bytes: int) -> None:
    path = tmp_path / "audit.jsonl"
    leased = _run_leasing_writers(path, 600, rotate_bytes)
    assert all(n > 0 for n in leased), leased  # both processes appended under a lease
    segments = [*sorted(p for p in tmp_path.iterdir() if p.name.startswith("audit-")), path]
    if rotate_bytes:
        assert len(segments) >= 10  # each process rotated segments the other was writing to
    records = [orjson.loads(line) for segment in segments for line in segment.read_bytes().splitlines()]
    assert [r["seq"] for r in records] == list(range(1, 2 * 601 + 1))
    seen = Counter((r["writer"], r["i"]) for r in records)
    assert all(seen[(w, i)] == 1 for w in ("w0", "w1") for i in range(-1, 600))
    assert check(file_source(tmp_path), None).ok


async def test_no_lease_once_another_writer_appended_to_the_log(tmp_path: Path) -> None:
    clock = ManualClock()
    path = tmp_path / "audit.jsonl"
    lock_path = path.with_name("audit.jsonl.lock")
    sink = await _opened(path, clock)
    other = JsonlSink(path, fsync="never")  # another process's sink (its own lock file description)
    await other.append([{"i": 1}])
    await other.aclose()
    assert sink.append_nowait([{"i": 2}]) is not None  # the log grew since this sink's last append
    assert _free(lock_path)
    clock.advance(jsonl_module.CONTENDED_SECONDS)
    assert sink.append_nowait([{"i": 3}]) is not None
    assert not _free(lock_path)
    await sink.aclose()
    assert verify_file(path).count == 4
