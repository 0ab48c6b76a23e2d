"""The hash chain check: the first edited, deleted, inserted or reordered record.

:func:`verify_lines` returns ``ok: N records`` and the head, or the first problem, e.g.
``record 17 (line 17): hash mismatch (edited)`` or ``record 18 missing (deleted)``. The chain alone
cannot tell a log cut short at its tail, or replaced by another valid chain: that takes the signed
checkpoints, held against the chain by :mod:`.completeness` (``mcplane audit verify``,
:mod:`.commands`). :func:`verify_lines` can also start after a record a checkpoint vouches for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson

from mcplane.audit.chain import GENESIS, record_hash

__all__ = ["Problem", "VerifyReport", "main", "verify_file", "verify_lines", "verify_postgres"]

ProblemKind = Literal["edited", "deleted", "inserted", "reordered"]
Locate = Callable[[int], str]
"""Where the row at a 0-based index is, for messages: ``"line 17"``, ``"audit-000000000101.jsonl line 3"``."""


@dataclass(frozen=True, slots=True)
class Problem:
    kind: ProblemKind
    seq: int | None
    """The record concerned (for ``deleted``: the first missing one)."""
    position: int | None
    """Its 1-based line (file) or row (PostgreSQL, in ``seq`` order); ``None`` for a missing record."""
    message: str


@dataclass(frozen=True, slots=True)
class VerifyReport:
    count: int
    head_seq: int
    head_hash: str
    problem: Problem | None = None
    first_time: str | None = None
    """The ``time`` of the first record checked (``None``: no records, or none has a time)."""
    last_time: str | None = None
    """The ``time`` of the last record checked before any problem."""

    @property
    def ok(self) -> bool:
        return self.problem is None

    def render(self) -> str:
        if self.problem is not None:
            return self.problem.message
        return f"ok: {self.count} records\nhead: seq {self.head_seq} hash {self.head_hash}"


@dataclass(frozen=True, slots=True)
class Row:
    """One stored record as the verifier sees it."""

    seq: int | None
    hash: str
    prev_hash: str
    intact: bool
    """The record parses and its own hash matches its content."""
    time: str | None = None


def parse_row(line: str | bytes) -> Row:
    try:
        record: Any = orjson.loads(line)
    except orjson.JSONDecodeError:
        return Row(None, "", "", False)
    if not isinstance(record, dict):
        return Row(None, "", "", False)
    seq, digest, prev = record.get("seq"), record.get("hash"), record.get("prev_hash")
    if not isinstance(seq, int) or not isinstance(digest, str) or not isinstance(prev, str):
        return Row(seq if isinstance(seq, int) else None, "", "", False)
    when = record.get("time")
    return Row(seq, digest, prev, record_hash(record) == digest, when if isinstance(when, str) else None)


def verify_lines(
    lines: Iterable[str | bytes],
    *,
    unit: str = "line",
    start: tuple[int, str] = (0, GENESIS),
    locate: Locate | None = None,
) -> VerifyReport:
    """Verify a chain given as canonical JSON records in stored order.

    ``start``: the ``(seq, hash)`` the first record follows (a record a checkpoint vouches for);
    ``locate``: how messages name a row's place (default: ``"{unit} {n}"``).
    """
    return verify_rows([parse_row(line) for line in lines], start=start, locate=locate or (lambda i: f"{unit} {i + 1}"))


def verify_rows(rows: list[Row], *, start: tuple[int, str] = (0, GENESIS), locate: Locate) -> VerifyReport:
    where: dict[int, list[int]] = {}
    for index, row in enumerate(rows):
        if row.seq is not None:
            where.setdefault(row.seq, []).append(index)
    expected, prev = start[0] + 1, start[1]
    first_time = last_time = None
    for i, row in enumerate(rows):
        problem = _check(rows, where, i, expected, prev, locate)
        if problem is not None:
            return VerifyReport(i, expected - 1, prev, problem, first_time, last_time)
        expected, prev = expected + 1, row.hash
        if row.time is not None:
            first_time = first_time or row.time
            last_time = row.time
    return VerifyReport(len(rows), expected - 1, prev, None, first_time, last_time)


def _check(
    rows: list[Row], where: dict[int, list[int]], i: int, expected: int, prev: str, locate: Locate
) -> Problem | None:
    row, n = rows[i], i + 1
    nxt = rows[i + 1] if i + 1 < len(rows) else None
    # A broken row the chain goes on without (the next row links to the one before it) was inserted.
    skipped = nxt is not None and nxt.intact and nxt.seq == expected and nxt.prev_hash == prev
    if row.seq is None:
        if skipped:
            return Problem("inserted", None, n, f"{locate(i)}: not an audit record (inserted)")
        return Problem("edited", None, n, f"{locate(i)}: not an audit record (edited)")
    at = f"record {row.seq} ({locate(i)})"
    if not row.intact:
        if skipped:
            return Problem("inserted", row.seq, n, f"{at}: not part of the chain (inserted)")
        return Problem("edited", row.seq, n, f"{at}: hash mismatch (edited)")
    if row.seq < 1:
        return Problem("edited", row.seq, n, f"{at}: invalid seq (edited)")
    if row.seq < expected:
        first = where[row.seq][0]
        if first < i and rows[first].prev_hash == row.prev_hash and nxt is not None and nxt.prev_hash == row.hash:
            # Two records claim this seq off the same predecessor and the chain goes on from this one.
            message = f"record {row.seq} ({locate(first)}): forged copy (inserted)"
            return Problem("inserted", row.seq, first + 1, message)
        if first == i:  # before the start: a record a checkpoint already vouches for comes again
            return Problem("inserted", row.seq, n, f"{at}: seq {row.seq} comes after record {expected - 1} (inserted)")
        return Problem("inserted", row.seq, n, f"{at}: seq {row.seq} already at {locate(first)} (inserted)")
    if row.seq > expected:
        later = [j for j in where.get(expected, []) if j > i]
        if later:
            return Problem(
                "reordered",
                row.seq,
                n,
                f"{at}: out of order (reordered; record {expected} is at {locate(later[0])})",
            )
        gap = f"record {expected}" if row.seq == expected + 1 else f"records {expected}-{row.seq - 1}"
        return Problem("deleted", expected, None, f"{gap} missing (deleted)")
    if row.prev_hash != prev:
        if i == 0:
            if prev == GENESIS:
                return Problem("edited", row.seq, n, f"{at}: prev_hash is not the genesis value (edited)")
            return Problem("edited", row.seq, n, f"{at}: does not link to record {expected - 1} (edited)")
        before = rows[i - 1]
        return Problem(
            "edited",
            before.seq,
            i,
            f"record {before.seq} ({locate(i - 1)}): edited (hash recomputed; record {row.seq} does not link to it)",
        )
    return None


def verify_file(path: str | Path) -> VerifyReport:
    """Verify a JSONL audit file (raises ``OSError`` if it cannot be read)."""
    with Path(path).open(encoding="utf-8") as handle:
        return verify_lines(line.rstrip("\n") for line in handle)


async def verify_postgres(dsn: str, table: str | None = None) -> VerifyReport:
    """Verify a PostgreSQL audit table, rows in ``seq`` order."""
    from mcplane.audit.postgres import DEFAULT_TABLE, iter_postgres_lines

    lines = [line async for line in iter_postgres_lines(dsn, table or DEFAULT_TABLE)]
    return verify_lines(lines, unit="row")


def main(argv: list[str]) -> int:
    """``mcplane audit verify`` (see :mod:`mcplane.audit.commands`)."""
    from mcplane.audit.commands import verify_main

    return verify_main(argv)
