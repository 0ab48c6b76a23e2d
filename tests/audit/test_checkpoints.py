"""Signed checkpoints on real JSONL logs: a cut tail, a deleted segment, a replaced log and a forged
checkpoint are each caught by ``mcplane audit verify`` and by the writer's own check before it appends."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson
import pytest

from mcplane.audit import ChainBroken, CheckpointOptions, JsonlSink
from mcplane.audit.chain import canonical
from mcplane.audit.checkpoint import Anchor, Signer, make_checkpoint
from mcplane.audit.commands import verify_main
from mcplane.audit.keys import generate_private_pem, load_private_key, public_text
from mcplane.audit.writer import AuditWriter
from tests.audit.conftest import ManualClock


def _entry(i: int) -> dict[str, object]:
    return {"name": f"tool{i}", "status": "ok", "time": f"2026-03-01T10:{i // 60:02d}:{i % 60:02d}.000Z"}


async def _write(path: Path, count: int, **options: object) -> None:
    """``count`` records through one writer process, closed cleanly (its shutdown checkpoint)."""
    sink = JsonlSink(path, **options)  # type: ignore[arg-type]
    for i in range(count):
        await sink.append([_entry(i)])
    await sink.aclose()


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n")[:-1]


def _sealed(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.name.startswith("audit-"))


def _cut(path: Path, records: int) -> None:
    path.write_bytes(b"".join(line + b"\n" for line in _lines(path)[:-records]))


def _verify(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = verify_main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


async def _start(path: Path, **options: object) -> tuple[str | None, JsonlSink]:
    sink = JsonlSink(path, **options)  # type: ignore[arg-type]
    return sink.verify_at_start(), sink


async def test_an_intact_log_verifies_and_says_what_its_checkpoint_covers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "audit.jsonl"
    await _write(path, 12)
    code, out = _verify(capsys, str(path))
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == "ok: 12 records (seq 1-12, 2026-03-01T10:00:00.000Z to 2026-03-01T10:00:11.000Z)"
    assert lines[1].startswith("checkpoint: the latest, of ")
    assert "covers records 1-12, 2026-03-01T10:00:00.000Z to 2026-03-01T10:00:11.000Z" in lines[1]
    assert "from audit.jsonl.checkpoints.key beside the log" in lines[1]
    assert lines[2] == "after it: 0 records not yet covered by a checkpoint"


@pytest.mark.parametrize(("cut", "missing"), [(1, "record 12 missing"), (3, "records 10-12 missing")])
async def test_a_cut_tail_is_caught(tmp_path: Path, capsys: pytest.CaptureFixture[str], cut: int, missing: str) -> None:
    path = tmp_path / "audit.jsonl"
    await _write(path, 12)
    _cut(path, cut)
    assert (await _verify_chain_alone(path, capsys)) == 0  # the chain alone cannot tell
    code, out = _verify(capsys, str(path))
    assert code == 1
    assert out.startswith(f"truncated: the log ends at record {12 - cut}, but the checkpoint of ")
    assert out.rstrip().endswith(f"covers record 12: {missing}")
    broken, sink = await _start(path)
    assert broken is not None
    assert f"ends at record {12 - cut}" in broken
    assert "(truncated or deleted)" in broken
    with pytest.raises(ChainBroken):
        await sink.append([_entry(99)])
    await sink.aclose()
    assert len(_lines(path)) == 12 - cut  # nothing was appended to the cut log


async def _verify_chain_alone(path: Path, capsys: pytest.CaptureFixture[str]) -> int:
    code, _ = _verify(capsys, str(path), "--no-checkpoints")
    return code


async def test_records_after_the_last_checkpoint_are_counted_not_covered(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A writer that crashed writes no shutdown checkpoint: what it wrote since its last one is
    # reported as not covered (and can be cut without a trace: see docs/audit.md).
    path = tmp_path / "audit.jsonl"
    sink = JsonlSink(path, checkpoints=CheckpointOptions(every=5))
    for i in range(8):
        await sink.append([_entry(i)])
    code, out = _verify(capsys, str(path))  # the sink is still open: no shutdown checkpoint yet
    assert code == 0, out
    assert "covers records 1-5" in out
    assert "after it: 3 records not yet covered by a checkpoint" in out
    await sink.aclose()


async def test_a_deleted_segment_is_caught(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "audit.jsonl"
    await _write(path, 30, rotate_bytes=900)
    sealed = _sealed(tmp_path)
    assert len(sealed) >= 3
    middle = sealed[1]
    first, last = (orjson.loads(line)["seq"] for line in (_lines(middle)[0], _lines(middle)[-1]))
    middle.unlink()
    code, out = _verify(capsys, str(tmp_path))
    assert code == 1
    assert out.splitlines()[0] == f"records {first}-{last} missing (deleted)"


async def test_the_deleted_newest_segments_are_caught(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "audit.jsonl"
    await _write(path, 30, rotate_bytes=900)
    newest = _sealed(tmp_path)[-1]
    ends_at = orjson.loads(_lines(newest)[0])["seq"] - 1
    newest.unlink()
    path.unlink()
    code, out = _verify(capsys, str(tmp_path))
    assert code == 1
    assert out.startswith(f"truncated: the log ends at record {ends_at}, but the checkpoint of ")
    broken, sink = await _start(path, rotate_bytes=900)
    assert broken is not None
    assert f"ends at record {ends_at}" in broken
    await sink.aclose()


async def test_a_deleted_segment_that_a_checkpoint_names_is_refused_at_start(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    await _write(path, 30, rotate_bytes=900)
    store = tmp_path / "audit.jsonl.checkpoints"
    lines = _lines(store)
    last_rotation = max(i for i, line in enumerate(lines) if orjson.loads(line)["reason"] == "rotation")
    store.write_bytes(b"".join(line + b"\n" for line in lines[: last_rotation + 1]))  # later ones dropped too
    named = orjson.loads(lines[last_rotation])["segment"]
    (tmp_path / f"audit-{named:012d}.jsonl").unlink()
    broken, sink = await _start(path, rotate_bytes=900)
    assert broken is not None
    assert f"segment audit-{named:012d}.jsonl (records from {named}, covered by the checkpoint of " in broken
    assert "is missing (deleted)" in broken
    await sink.aclose()


async def test_a_replaced_log_is_caught(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "audit.jsonl"
    await _write(path, 12)
    elsewhere = tmp_path / "forged" / "audit.jsonl"
    forged = JsonlSink(elsewhere, checkpoints=None)  # a valid chain, every hash right, other records
    await forged.append([{**_entry(i), "subject": "mallory"} for i in range(15)])
    await forged.aclose()
    shutil.copy(elsewhere, path)
    assert (await _verify_chain_alone(path, capsys)) == 0
    code, out = _verify(capsys, str(path))
    assert code == 1
    assert "record 12 does not match the checkpoint of " in out
    assert "(the log was replaced or rewritten)" in out
    broken, sink = await _start(path)
    assert broken is not None
    assert "record 12 in audit.jsonl does not match the checkpoint of " in broken
    await sink.aclose()


async def test_a_log_replaced_along_with_its_checkpoints_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    await _write(path, 5)
    (tmp_path / "audit.jsonl.checkpoints").unlink()
    broken, sink = await _start(path)
    assert broken is not None
    assert "holds records up to 5 but audit.jsonl.checkpoints has no checkpoint" in broken
    await sink.aclose()


def _forged_checkpoint(seq: int, digest: str, key_pem: str) -> bytes:
    key = load_private_key(key_pem)
    signer = Signer(key_pem, lambda: key)
    body = make_checkpoint(Anchor(seq, digest, 1, 0, None), log="audit.jsonl", first_time=None, reason="records", at=0)
    return canonical(signer.sign(body)) + b"\n"


async def test_a_checkpoint_signed_with_another_key_is_forged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Cut the tail, then add a checkpoint for the new head signed with a key of one's own.
    path = tmp_path / "audit.jsonl"
    await _write(path, 12)
    _cut(path, 3)
    head = orjson.loads(_lines(path)[-1])
    store = tmp_path / "audit.jsonl.checkpoints"
    with store.open("ab") as handle:
        handle.write(_forged_checkpoint(head["seq"], head["hash"], generate_private_pem()))
    code, out = _verify(capsys, str(path))
    assert code == 1
    number = len(_lines(store))
    assert f"audit.jsonl.checkpoints line {number}: the checkpoint of " in out
    assert "which is not trusted (forged" in out
    assert "truncated: the log ends at record 9" in out  # the genuine checkpoints still count
    broken, sink = await _start(path)
    assert broken is not None
    assert "is signed by key" in broken
    assert "not trusted (forged" in broken
    await sink.aclose()


async def test_an_edited_checkpoint_is_forged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "audit.jsonl"
    await _write(path, 12)
    _cut(path, 3)
    store = tmp_path / "audit.jsonl.checkpoints"
    lines = _lines(store)
    edited = {**orjson.loads(lines[-1]), "seq": 9, "records": 9, "hash": orjson.loads(_lines(path)[-1])["hash"]}
    store.write_bytes(b"".join(line + b"\n" for line in [*lines[:-1], canonical(edited)]))
    code, out = _verify(capsys, str(path))
    assert code == 1
    assert "has a signature that does not match its content or key" in out
    broken, sink = await _start(path)
    assert broken is not None
    assert "has a signature that does not match" in broken
    await sink.aclose()


async def test_a_pinned_key_catches_checkpoints_re_signed_with_a_new_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The limit of the generated key: whoever can replace the log, its checkpoints and the key
    # beside them passes the default check; an auditor who pinned the public key does not.
    path = tmp_path / "audit.jsonl"
    await _write(path, 6)
    key_file = tmp_path / "audit.jsonl.checkpoints.key"
    pinned = public_text(load_private_key(key_file.read_text()))
    assert _verify(capsys, str(path), "--public-key", pinned)[0] == 0
    new_key = generate_private_pem()
    key_file.write_text(new_key)
    (tmp_path / "audit.jsonl.checkpoints").write_bytes(
        b"".join(
            _forged_checkpoint(record["seq"], record["hash"], new_key)
            for record in (orjson.loads(line) for line in _lines(path))
        )
    )
    assert _verify(capsys, str(path))[0] == 0
    code, out = _verify(capsys, str(path), "--public-key", pinned)
    assert code == 1
    assert "which is not trusted (forged" in out
    pub = tmp_path / "pinned.pub"
    pub.write_text(pinned)
    assert _verify(capsys, str(path), "--public-key", str(pub))[0] == 1  # a file holding the key works the same


async def test_verify_without_a_key_for_signed_checkpoints_exits_two(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "audit.jsonl"
    key = generate_private_pem()
    await _write(path, 3, checkpoints=CheckpointOptions(key=key))
    assert not (tmp_path / "audit.jsonl.checkpoints.key").exists()  # a configured key: nothing generated
    code, out = _verify(capsys, str(path))
    assert code == 2
    assert "no key to check the checkpoints with" in out
    assert _verify(capsys, str(path), "--public-key", public_text(load_private_key(key)))[0] == 0


async def test_a_changed_key_is_trusted_only_when_listed(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    old, new = generate_private_pem(), generate_private_pem()
    await _write(path, 3, checkpoints=CheckpointOptions(key=old))
    broken, sink = await _start(path, checkpoints=CheckpointOptions(key=new))
    assert broken is not None
    assert "not trusted" in broken
    await sink.aclose()
    trusted = CheckpointOptions(key=new, trusted_keys=(public_text(load_private_key(old)),))
    broken, sink = await _start(path, checkpoints=trusted)
    assert broken is None
    await sink.append([_entry(3)])
    await sink.aclose()


async def test_checkpoints_come_every_n_records_on_the_interval_and_at_shutdown(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    clock = ManualClock()
    writer = AuditWriter(
        JsonlSink(path, fsync="never", clock=clock, checkpoints=CheckpointOptions(every=4, interval=30))
    )
    store = tmp_path / "audit.jsonl.checkpoints"

    def reasons() -> list[tuple[str, int]]:
        return [(c["reason"], c["seq"]) for c in map(orjson.loads, _lines(store))]

    for i in range(5):
        await writer.write_pending(_entry(i))
    assert reasons() == [("open", 0), ("records", 4)]
    await writer.flush()
    assert reasons() == [("open", 0), ("records", 4)]  # the interval has not passed
    clock.advance(30)
    await writer.flush()  # a readiness check: record 5 gets its checkpoint
    assert reasons()[-1] == ("interval", 5)
    clock.advance(60)
    await writer.flush()
    assert len(reasons()) == 3  # nothing new to cover
    await writer.write_pending(_entry(5))  # the interval passed, long ago: this write is covered at once
    assert reasons()[-1] == ("interval", 6)
    await writer.write_pending(_entry(6))
    assert reasons()[-1] == ("interval", 6)
    await writer.aclose()
    assert reasons()[-1] == ("shutdown", 7)


async def test_a_partial_checkpoint_line_from_a_crash_is_cut_before_the_next_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "audit.jsonl"
    await _write(path, 4)
    store = tmp_path / "audit.jsonl.checkpoints"
    whole = store.read_bytes()
    with store.open("ab") as handle:
        handle.write(b'{"type":"mcplane.audit.checkpoint","seq":')  # the write a crash interrupted
    code, out = _verify(capsys, str(path))
    assert code == 0, out
    assert "ends in a partial line (a write interrupted by a crash): left out" in out
    broken, sink = await _start(path)
    assert broken is None
    await sink.append([_entry(4)])
    await sink.aclose()
    assert store.read_bytes().startswith(whole)
    assert all(line.startswith(b'{"at":') for line in _lines(store))  # the partial line is gone
    assert _verify(capsys, str(path))[0] == 0


async def test_a_line_in_the_checkpoints_that_is_no_checkpoint_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "audit.jsonl"
    await _write(path, 4)
    with (tmp_path / "audit.jsonl.checkpoints").open("ab") as handle:
        handle.write(b'{"note": "nothing to see"}\n')
    code, out = _verify(capsys, str(path))
    assert code == 1
    assert "not a checkpoint (edited or forged)" in out
    broken, sink = await _start(path)
    assert broken is not None
    assert "is not a checkpoint (edited)" in broken
    await sink.aclose()


async def test_the_start_up_check_holds_the_log_against_the_highest_recent_checkpoint(tmp_path: Path) -> None:
    # Several writers: the last checkpoint written may cover fewer records than one written before it.
    path = tmp_path / "audit.jsonl"
    one, two = JsonlSink(path), JsonlSink(path)
    await one.append([_entry(0)])
    for i in range(1, 6):
        await two.append([_entry(i)])
    await two.aclose()  # shutdown checkpoint: record 6
    await one.aclose()  # shutdown checkpoint: record 1, written last
    _cut(path, 2)
    broken, sink = await _start(path)
    assert broken is not None
    assert "ends at record 4, but the checkpoint of " in broken
    assert "(seq 6) covers record 6" in broken
    await sink.aclose()


async def test_the_generated_key_is_private(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    await _write(path, 1)
    key_file = tmp_path / "audit.jsonl.checkpoints.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "audit.jsonl.checkpoints").stat().st_mode & 0o777 == 0o600
    assert key_file.read_text().startswith("-----BEGIN PRIVATE KEY-----")


async def test_a_record_edited_after_the_last_checkpoint_is_refused_at_start(tmp_path: Path) -> None:
    # A writer that crashed: records 6-8 follow the last checkpoint; one of them is then edited.
    path = tmp_path / "audit.jsonl"
    sink = JsonlSink(path, checkpoints=CheckpointOptions(every=5))
    for i in range(8):
        await sink.append([_entry(i)])
    lines = _lines(path)
    lines[6] = lines[6].replace(b'"tool6"', b'"tool9"')
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    broken, restarted = await _start(path)
    assert broken is not None
    assert broken.startswith("after the checkpoint of ")
    assert broken.endswith("(seq 5): record 7 (audit.jsonl line 7): hash mismatch (edited)")
    await restarted.aclose()
    await sink.aclose()
