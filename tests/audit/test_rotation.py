"""Rotation: segments by size and by time, one chain across them, several writer processes rotating
under load without losing a record; ``mcplane audit verify`` takes the directory."""

from __future__ import annotations

import itertools
import os
import subprocess
from collections import Counter
from pathlib import Path

import orjson
import pytest

from mcplane.audit import JsonlSink
from mcplane.audit.checkpoint import utc_text
from mcplane.audit.completeness import check, file_source
from tests.audit.conftest import ManualClock, run_writer_processes
from tests.conftest import mcplane_command

DAY = 86_400.0


def _records(path: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in path.read_bytes().split(b"\n")[:-1]]


def _segments(directory: Path) -> list[Path]:
    sealed = sorted(p for p in directory.iterdir() if p.name.startswith("audit-"))
    return [*sealed, directory / "audit.jsonl"]


async def test_size_rotation_goes_on_with_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JsonlSink(path, rotate_bytes=1000)
    for i in range(40):
        await sink.append([{"i": i}])
    await sink.aclose()
    segments = _segments(tmp_path)
    assert len(segments) >= 4
    for before, after in itertools.pairwise(segments):
        last, first = _records(before)[-1], _records(after)[0]
        assert first["seq"] == last["seq"] + 1  # type: ignore[operator]
        assert first["prev_hash"] == last["hash"]
        assert after == path or after.name == f"audit-{first['seq']:012d}.jsonl"
        assert before.stat().st_size < 1000 + 200  # rotated before the append that would pass the limit by more
    report = check(file_source(tmp_path), None)
    assert report.ok, report.render()
    assert report.chain.count == 40


async def test_time_rotation_starts_a_segment_each_period(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    wall = ManualClock(20_000 * DAY + DAY - 120)  # two minutes to midnight, UTC
    sink = JsonlSink(path, rotate_interval=DAY, wall=wall)

    async def record(i: int) -> None:
        await sink.append([{"i": i, "time": utc_text(wall())}])

    await record(0)
    wall.advance(60)
    await record(1)
    assert len(_segments(tmp_path)) == 1
    wall.advance(120)  # past midnight
    await record(2)
    await record(3)
    await sink.aclose()
    assert [len(_records(p)) for p in _segments(tmp_path)] == [2, 2]
    assert (tmp_path / "audit-000000000001.jsonl").exists()


async def test_a_writer_continues_from_the_newest_segment_when_the_active_one_is_empty(tmp_path: Path) -> None:
    # A writer that crashed between sealing a segment and writing the new one's first record.
    path = tmp_path / "audit.jsonl"
    sink = JsonlSink(path)
    await sink.append([{"i": 0}, {"i": 1}])
    await sink.aclose()
    path.rename(tmp_path / "audit-000000000001.jsonl")
    path.touch()
    sink = JsonlSink(path)
    assert sink.verify_at_start() is None
    [record] = await sink.append([{"i": 2}])
    await sink.aclose()
    assert record["seq"] == 3
    assert record["prev_hash"] == _records(tmp_path / "audit-000000000001.jsonl")[-1]["hash"]
    assert check(file_source(tmp_path), None).ok


@pytest.mark.skipif(os.name != "posix", reason="flock is POSIX-only")
def test_two_writer_processes_rotating_under_load_lose_no_record(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    run_writer_processes("jsonl", str(path), "", count=400, writers=2, rotate_bytes=4096)
    segments = _segments(tmp_path)
    assert len(segments) >= 10
    records = [record for segment in segments for record in _records(segment)]
    assert [r["seq"] for r in records] == list(range(1, 2 * 401 + 1))
    seen = Counter((r["writer"], r["i"]) for r in records)
    assert all(seen[(w, i)] == 1 for w in ("w0", "w1") for i in range(-1, 400))
    done = subprocess.run(mcplane_command("audit", "verify", str(tmp_path)), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(f"ok: 802 records (seq 1-802, in {len(segments)} segments)")
    assert "after it: 0 records" in done.stdout  # both writers closed cleanly
