"""What only the JSONL sink does: torn tails, fsync policy, file mode, several processes (rotation and
checkpoints: test_rotation.py, test_checkpoints.py)."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import orjson
import pytest

from mcplane.audit import AuditFileError, ChainBroken, CheckpointOptions, JsonlSink, verify_file
from mcplane.audit import jsonl as jsonl_module
from tests.audit.conftest import ManualClock, run_writer_processes


def _count_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(jsonl_module.os, "fsync", fsync)
    return calls


async def test_the_file_is_private_and_created_with_its_directory(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "audit.jsonl"
    sink = JsonlSink(path)
    await sink.append([{"name": "a\u2028b\u0085c"}])  # line separators other than "\n" stay inside a record
    await sink.aclose()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert verify_file(path).count == 1
    assert sink.description == f"jsonl:{path}"


async def test_a_torn_last_line_is_refused_not_extended(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JsonlSink(path)
    await sink.append([{"name": "a"}])
    await sink.aclose()
    with path.open("ab") as handle:
        handle.write(b'{"seq": 2, "hash": "ab')
    before = path.read_bytes()
    reopened = JsonlSink(path)
    with pytest.raises(AuditFileError, match="incomplete line"):
        await reopened.append([{"name": "b"}])
    await reopened.aclose()
    assert path.read_bytes() == before


async def test_a_last_line_that_is_no_record_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_text("not json\n")
    sink = JsonlSink(path)
    with pytest.raises(AuditFileError, match="not an audit record"):
        await sink.append([{"name": "b"}])
    await sink.aclose()


async def test_a_failed_write_is_truncated_away(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JsonlSink(path)
    await sink.append([{"name": "a"}])
    real_write = os.write

    def half_then_full(fd: int, data: bytes | memoryview) -> int:
        real_write(fd, bytes(data)[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(jsonl_module.os, "write", half_then_full)
    with pytest.raises(OSError, match="No space"):
        await sink.append([{"name": "b"}])
    monkeypatch.setattr(jsonl_module.os, "write", real_write)
    await sink.append([{"name": "c"}])
    await sink.aclose()
    report = verify_file(path)
    assert report.ok, report.render()
    assert [orjson.loads(line)["name"] for line in path.read_text().splitlines()] == ["a", "c"]


async def test_fsync_always_syncs_every_append(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_fsyncs(monkeypatch)
    sink = JsonlSink(tmp_path / "audit.jsonl", fsync="always", checkpoints=None)
    for i in range(3):
        await sink.append([{"i": i}])
    await sink.aclose()
    assert len(calls) == 1 + 3  # the new file's directory entry, then each append


async def test_fsync_interval_syncs_at_most_once_per_interval_and_on_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _count_fsyncs(monkeypatch)
    clock = ManualClock()
    sink = JsonlSink(tmp_path / "audit.jsonl", fsync="interval", fsync_interval=1.0, clock=clock, checkpoints=None)
    for i in range(3):
        await sink.append([{"i": i}])
    assert len(calls) == 1  # the directory only
    clock.advance(1.0)
    await sink.append([{"i": 3}])
    assert len(calls) == 2
    await sink.append([{"i": 4}])
    assert len(calls) == 2
    await sink.aclose()
    assert len(calls) == 3  # the unsynced tail, on close


async def test_fsync_never_leaves_it_to_the_os(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_fsyncs(monkeypatch)
    sink = JsonlSink(tmp_path / "audit.jsonl", fsync="never", checkpoints=None)
    await sink.append([{"i": 1}])
    await sink.aclose()
    assert calls == []


async def test_records_are_on_disk_before_a_checkpoint_covers_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # fsync "never" leaves the log to the OS, except before a checkpoint: a machine crash must not
    # leave a checkpoint covering records the disk never got (that would read as a truncated log).
    path = tmp_path / "audit.jsonl"
    sink = JsonlSink(path, fsync="never", checkpoints=CheckpointOptions(every=3))
    await sink.ping()  # checks the (empty) chain and generates the key
    calls = _count_fsyncs(monkeypatch)
    await sink.append([{"i": 0}, {"i": 1}])
    assert calls == []  # the "open" checkpoint covered an empty log: nothing to sync
    await sink.append([{"i": 2}])  # the third record: a checkpoint is due
    log_fd = sink._fd  # pyright: ignore[reportPrivateUsage]
    assert calls == [log_fd]
    await sink.aclose()


def test_an_unknown_fsync_policy_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fsync"):
        JsonlSink(tmp_path / "a.jsonl", fsync="sometimes")  # type: ignore[arg-type]


async def test_a_log_moved_away_under_a_writer_is_refused_not_restarted(tmp_path: Path) -> None:
    # logrotate's way (rename, then the writer starts a new file) would start a second chain and lose
    # the first from the writer's view: the sink refuses instead (rotate with audit.rotate_bytes).
    path = tmp_path / "audit.jsonl"
    sink = JsonlSink(path)
    await sink.append([{"i": 1}, {"i": 2}])
    path.rename(tmp_path / "audit.jsonl.1")
    with pytest.raises(ChainBroken, match=r"now ends at record 0, but record 2 was written"):
        await sink.append([{"i": 3}])
    assert sink.broken is not None
    await sink.aclose()
    assert not path.exists() or path.read_bytes() == b""


async def test_a_file_grown_by_another_writer_is_resumed_from_its_tail(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    one, two = JsonlSink(path), JsonlSink(path)
    await one.append([{"w": 1}])
    await two.append([{"w": 2}])
    await one.append([{"w": 1}])
    await one.aclose()
    await two.aclose()
    report = verify_file(path)
    assert (report.ok, report.count) == (True, 3), report.render()


@pytest.mark.skipif(os.name != "posix", reason="flock is POSIX-only")
def test_several_processes_appending_to_one_file_write_one_chain(tmp_path: Path) -> None:
    # Without the flock this fails: two writers read the same tail and fork the chain.
    path = tmp_path / "audit.jsonl"
    run_writer_processes("jsonl", str(path), "", count=100, writers=3)
    report = verify_file(path)
    assert report.ok, report.render()
    assert report.count == 3 * 101
    assert (tmp_path / "audit.jsonl.lock").exists()
    assert {orjson.loads(line)["writer"] for line in path.read_text().splitlines()} == {"w0", "w1", "w2"}


async def test_ping_fails_where_the_file_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "not-a-dir").write_text("")
    sink = JsonlSink(tmp_path / "not-a-dir" / "audit.jsonl")
    with pytest.raises(OSError, match=r"Not a directory|File exists"):
        await sink.ping()
