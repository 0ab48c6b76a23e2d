"""The AuditSink contract, run against the JSONL file and PostgreSQL sinks alike."""

from __future__ import annotations

import anyio
import orjson
import pytest

from mcplane.audit import GENESIS, AuditSink, canonical, record_hash, verify_lines
from tests.audit.conftest import SinkFactory


def _entry(i: int) -> dict[str, object]:
    return {"kind": "tool", "name": f"t{i}", "status": "ok", "note": "ünïcode ✓ \u2028 \n \x00"}


async def test_append_seals_and_stores_the_chain(sink: AuditSink) -> None:
    records = await sink.append([_entry(1), _entry(2)])
    assert [r["seq"] for r in records] == [1, 2]
    assert records[0]["prev_hash"] == GENESIS
    assert records[1]["prev_hash"] == records[0]["hash"]
    assert all(record_hash(r) == r["hash"] for r in records)
    lines = await sink.read_lines()
    assert lines == [canonical(r).decode() for r in records]
    assert [orjson.loads(line)["name"] for line in lines] == ["t1", "t2"]


async def test_empty_append_writes_nothing(sink: AuditSink) -> None:
    assert await sink.append([]) == []
    assert await sink.read_lines() == []
    report = verify_lines([])
    assert (report.ok, report.count) == (True, 0)


async def test_a_restarted_sink_resumes_the_chain(sink_factory: SinkFactory) -> None:
    first = sink_factory()
    before = await first.append([_entry(1), _entry(2)])
    await first.aclose()
    second = sink_factory()
    try:
        after = await second.append([_entry(3)])
        lines = await second.read_lines()
    finally:
        await second.aclose()
    assert after[0]["seq"] == 3
    assert after[0]["prev_hash"] == before[-1]["hash"]
    report = verify_lines(lines)
    assert report.ok, report.render()
    assert (report.count, report.head_hash) == (3, after[0]["hash"])


async def test_concurrent_appends_in_one_process_make_one_chain(sink: AuditSink) -> None:
    async with anyio.create_task_group() as tg:
        for i in range(40):
            tg.start_soon(sink.append, [_entry(i)])
    lines = await sink.read_lines()
    report = verify_lines(lines)
    assert report.ok, report.render()
    assert report.count == 40
    assert sorted(orjson.loads(line)["name"] for line in lines) == sorted(f"t{i}" for i in range(40))


async def test_a_closed_sink_can_append_again(sink: AuditSink) -> None:
    await sink.append([_entry(1)])
    await sink.aclose()
    await sink.append([_entry(2)])
    report = verify_lines(await sink.read_lines())
    assert (report.ok, report.count) == (True, 2)


async def test_entries_may_not_set_chain_fields(sink: AuditSink) -> None:
    for field in ("seq", "hash", "prev_hash", "v"):
        with pytest.raises(ValueError, match=field):
            await sink.append([{"name": "x", field: 1}])
    assert await sink.read_lines() == []


async def test_ping_succeeds_on_a_working_sink(sink: AuditSink) -> None:
    await sink.ping()
    assert await sink.append([_entry(1)]) != []
