"""Tamper evidence: verify names the first edited, deleted, inserted or reordered record, and the CLI exits non-zero."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from mcplane.audit import GENESIS, canonical, record_hash, seal, verify_file, verify_lines
from mcplane.audit.verify import main


def _chain(count: int = 30) -> list[str]:
    lines: list[str] = []
    prev = GENESIS
    for seq in range(1, count + 1):
        record = seal({"name": f"tool{seq}", "status": "ok", "subject": "alice"}, seq, prev)
        prev = record["hash"]
        lines.append(canonical(record).decode())
    return lines


def _edit(line: str, *, rehash: bool = False, **changes: object) -> str:
    record = {**orjson.loads(line), **changes}
    if rehash:
        record["hash"] = record_hash(record)
    return canonical(record).decode()


def _write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "audit.jsonl"
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_an_intact_chain_is_ok() -> None:
    report = verify_lines(_chain())
    assert report.ok
    assert report.render().splitlines()[0] == "ok: 30 records"
    assert (report.head_seq, report.head_hash) == (30, orjson.loads(_chain()[-1])["hash"])


def test_an_edited_record_is_named() -> None:
    lines = _chain()
    lines[16] = _edit(lines[16], status="error")
    problem = verify_lines(lines).problem
    assert problem is not None
    assert (problem.kind, problem.seq, problem.position) == ("edited", 17, 17)
    assert problem.message == "record 17 (line 17): hash mismatch (edited)"


def test_an_edited_record_whose_hash_was_recomputed_is_named() -> None:
    lines = _chain()
    lines[16] = _edit(lines[16], rehash=True, subject="mallory")
    problem = verify_lines(lines).problem
    assert problem is not None
    assert (problem.kind, problem.seq, problem.position) == ("edited", 17, 17)
    assert problem.message.startswith("record 17 (line 17): edited")


def test_an_edited_last_record_is_named() -> None:
    lines = _chain()
    lines[-1] = _edit(lines[-1], name="other")
    problem = verify_lines(lines).problem
    assert problem is not None
    assert (problem.kind, problem.seq) == ("edited", 30)


def test_a_line_replaced_by_garbage_is_named() -> None:
    lines = _chain()
    lines[4] = "{not json"
    problem = verify_lines(lines).problem
    assert problem is not None
    assert (problem.kind, problem.position) == ("edited", 5)


def test_a_record_with_an_impossible_seq_is_caught() -> None:
    lines = _chain(3)
    lines[0] = _edit(lines[0], rehash=True, seq=0)
    problem = verify_lines(lines).problem
    assert problem is not None
    assert (problem.kind, problem.seq, problem.position) == ("edited", 0, 1)


def test_a_forged_first_record_is_caught() -> None:
    lines = _chain(3)
    lines[0] = _edit(lines[0], rehash=True, prev_hash="f" * 64)
    problem = verify_lines(lines).problem
    assert problem is not None
    assert (problem.kind, problem.seq, problem.position) == ("edited", 1, 1)


@pytest.mark.parametrize(
    ("deleted", "message"),
    [
        ([17], "record 18 missing (deleted)"),
        ([17, 18, 19], "records 18-20 missing (deleted)"),
        ([0], "record 1 missing (deleted)"),
    ],
)
def test_a_deleted_record_is_named(deleted: list[int], message: str) -> None:
    lines = [line for i, line in enumerate(_chain()) if i not in deleted]
    problem = verify_lines(lines).problem
    assert problem is not None
    assert (problem.kind, problem.seq, problem.message) == ("deleted", deleted[0] + 1, message)


def test_an_inserted_copy_of_a_record_is_named() -> None:
    lines = _chain()
    lines.insert(10, lines[4])
    problem = verify_lines(lines).problem
    assert problem is not None
    assert (problem.kind, problem.seq, problem.position) == ("inserted", 5, 11)
    assert problem.message == "record 5 (line 11): seq 5 already at line 5 (inserted)"


def test_an_inserted_record_with_a_made_up_hash_is_named() -> None:
    lines = _chain()
    forged = {**orjson.loads(lines[10]), "name": "backdoor", "hash": "0" * 64}
    lines.insert(10, canonical(forged).decode())
    problem = verify_lines(lines).problem
    assert problem is not None
    assert (problem.kind, problem.position) == ("inserted", 11)


def test_an_inserted_self_consistent_forgery_is_named() -> None:
    lines = _chain()
    prev = orjson.loads(lines[9])["hash"]
    forged = seal({"name": "backdoor", "status": "ok", "subject": "mallory"}, 11, prev)
    lines.insert(10, canonical(forged).decode())
    problem = verify_lines(lines).problem
    assert problem is not None
    assert (problem.kind, problem.seq, problem.position) == ("inserted", 11, 11)
    assert problem.message == "record 11 (line 11): forged copy (inserted)"


def test_an_inserted_non_record_line_is_named() -> None:
    lines = _chain()
    lines.insert(3, '{"hello": "world"}')
    problem = verify_lines(lines).problem
    assert problem is not None
    assert (problem.kind, problem.position) == ("inserted", 4)


def test_swapped_records_are_named() -> None:
    lines = _chain()
    lines[4], lines[5] = lines[5], lines[4]
    problem = verify_lines(lines).problem
    assert problem is not None
    assert (problem.kind, problem.seq, problem.position) == ("reordered", 6, 5)
    assert problem.message == "record 6 (line 5): out of order (reordered; record 5 is at line 6)"


def test_a_record_moved_to_the_end_is_named() -> None:
    lines = _chain()
    lines.append(lines.pop(2))
    problem = verify_lines(lines).problem
    assert problem is not None
    assert (problem.kind, problem.position) == ("reordered", 3)


def test_cli_prints_ok_and_exits_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, _chain(5))
    assert main(["--file", str(path), "--no-checkpoints"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "ok: 5 records (seq 1-5)"
    assert out[1].startswith("checkpoints: not checked (--no-checkpoints)")
    assert verify_file(path).ok


def test_cli_fails_a_log_with_records_and_no_checkpoints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A whole log written anew, its checkpoint store deleted: the chain alone looks fine.
    path = _write(tmp_path, _chain(5))
    assert main([str(path)]) == 1
    assert capsys.readouterr().out.startswith("no checkpoints: audit.jsonl.checkpoints is missing")


def _edit_17(lines: list[str]) -> None:
    lines[16] = _edit(lines[16], status="error")


def _delete_18(lines: list[str]) -> None:
    del lines[17]


def _insert_copy_of_5(lines: list[str]) -> None:
    lines.insert(10, lines[4])


def _swap_6_and_7(lines: list[str]) -> None:
    lines[5], lines[6] = lines[6], lines[5]


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (_edit_17, "record 17 (line 17): hash mismatch (edited)"),
        (_delete_18, "record 18 missing (deleted)"),
        (_insert_copy_of_5, "record 5 (line 11): seq 5 already at line 5 (inserted)"),
        (_swap_6_and_7, "record 7 (line 6): out of order (reordered; record 6 is at line 7)"),
    ],
    ids=["edit", "delete", "insert", "reorder"],
)
def test_cli_prints_the_first_problem_and_exits_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tamper: Callable[[list[str]], None], message: str
) -> None:
    lines = _chain()
    tamper(lines)
    path = _write(tmp_path, lines)
    assert main(["--file", str(path), "--no-checkpoints"]) == 1
    assert capsys.readouterr().out.strip() == message


def test_cli_reports_an_unreadable_file_with_exit_two(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--file", str(tmp_path / "missing.jsonl")]) == 2
    assert "FileNotFoundError" in capsys.readouterr().err


def test_cli_usage_errors_exit_two(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["--file", "a", "--dsn", "b"]) == 2
    assert main(["--file", str(tmp_path / "a"), "--table", "t"]) == 2
    assert "--table goes with --dsn" in capsys.readouterr().err
