"""``mcplane audit verify``: check a chain and report the first edited, deleted, inserted or reordered record.

Usage: ``mcplane audit verify (--file PATH | --dsn DSN [--table T])``. Prints ``ok: N records``
(and the head ``seq`` and hash, to keep elsewhere: only an outside copy of the head catches a
truncated tail or a rewrite of every later record) and exits 0, or prints the first problem,
e.g. ``record 17 (line 17): hash mismatch (edited)`` or ``record 18 missing (deleted)``, and
exits 1. ``--dsn`` may be a secret reference such as ``'${env:AUDIT_DSN}'``. Exit 2: unreadable.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import anyio
import orjson

from mcplane.audit.chain import GENESIS, record_hash

__all__ = ["Problem", "VerifyReport", "main", "verify_file", "verify_lines", "verify_postgres"]

ProblemKind = Literal["edited", "deleted", "inserted", "reordered"]


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

    @property
    def ok(self) -> bool:
        return self.problem is None

    def render(self) -> str:
        if self.problem is not None:
            return self.problem.message
        return f"ok: {self.count} records\nhead: seq {self.head_seq} hash {self.head_hash}"


@dataclass(frozen=True, slots=True)
class _Row:
    seq: int | None
    hash: str
    prev_hash: str
    intact: bool
    """The record parses and its own hash matches its content."""


def _parse(line: str) -> _Row:
    try:
        record: Any = orjson.loads(line)
    except orjson.JSONDecodeError:
        return _Row(None, "", "", False)
    if not isinstance(record, dict):
        return _Row(None, "", "", False)
    seq, digest, prev = record.get("seq"), record.get("hash"), record.get("prev_hash")
    if not isinstance(seq, int) or not isinstance(digest, str) or not isinstance(prev, str):
        return _Row(seq if isinstance(seq, int) else None, "", "", False)
    return _Row(seq, digest, prev, record_hash(record) == digest)


def verify_lines(lines: Iterable[str], *, unit: str = "line") -> VerifyReport:
    """Verify a chain given as canonical JSON records in stored order."""
    rows = [_parse(line) for line in lines]
    where: dict[int, list[int]] = {}
    for index, row in enumerate(rows):
        if row.seq is not None:
            where.setdefault(row.seq, []).append(index)
    expected, prev = 1, GENESIS
    for i, row in enumerate(rows):
        problem = _check(rows, where, i, expected, prev, unit)
        if problem is not None:
            return VerifyReport(i, expected - 1, prev, problem)
        expected, prev = expected + 1, row.hash
    return VerifyReport(len(rows), expected - 1, prev)


def _check(
    rows: list[_Row], where: dict[int, list[int]], i: int, expected: int, prev: str, unit: str
) -> Problem | None:
    row, n = rows[i], i + 1
    nxt = rows[i + 1] if i + 1 < len(rows) else None
    # A broken row the chain goes on without (the next row links to the one before it) was inserted.
    skipped = nxt is not None and nxt.intact and nxt.seq == expected and nxt.prev_hash == prev
    if row.seq is None:
        if skipped:
            return Problem("inserted", None, n, f"{unit} {n}: not an audit record (inserted)")
        return Problem("edited", None, n, f"{unit} {n}: not an audit record (edited)")
    at = f"record {row.seq} ({unit} {n})"
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
            return Problem(
                "inserted", row.seq, first + 1, f"record {row.seq} ({unit} {first + 1}): forged copy (inserted)"
            )
        return Problem("inserted", row.seq, n, f"{at}: seq {row.seq} already at {unit} {first + 1} (inserted)")
    if row.seq > expected:
        later = [j for j in where.get(expected, []) if j > i]
        if later:
            return Problem(
                "reordered",
                row.seq,
                n,
                f"{at}: out of order (reordered; record {expected} is at {unit} {later[0] + 1})",
            )
        gap = f"record {expected}" if row.seq == expected + 1 else f"records {expected}-{row.seq - 1}"
        return Problem("deleted", expected, None, f"{gap} missing (deleted)")
    if row.prev_hash != prev:
        if i == 0:
            return Problem("edited", row.seq, n, f"{at}: prev_hash is not the genesis value (edited)")
        before = rows[i - 1]
        return Problem(
            "edited",
            before.seq,
            i,
            f"record {before.seq} ({unit} {i}): edited (hash recomputed; record {row.seq} does not link to it)",
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
    """``mcplane audit verify``: 0 when the chain is intact, 1 at the first problem, 2 if unreadable."""
    parser = argparse.ArgumentParser(prog="mcplane audit verify", description="Verify an audit hash chain.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--file", help="a JSONL audit file")
    source.add_argument("--dsn", help="a PostgreSQL DSN, or a secret reference such as '${env:AUDIT_DSN}'")
    parser.add_argument("--table", default=None, help="the PostgreSQL audit table (default: mcplane_audit)")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    try:
        if args.file is not None:
            if args.table is not None:
                parser.print_usage(sys.stderr)
                print("error: --table goes with --dsn", file=sys.stderr)
                return 2
            report = verify_file(args.file)
        else:
            report = anyio.run(verify_postgres, _reveal_dsn(args.dsn), args.table)
    except Exception as exc:
        print(f"error: cannot read the audit log: {type(exc).__name__}: {str(exc)[:300]}", file=sys.stderr)
        return 2
    print(report.render())
    return 0 if report.ok else 1


def _reveal_dsn(dsn: str) -> str:
    from mcplane.secrets import Secret, Secrets

    resolved = Secrets(refresh_interval=None).resolve(dsn)
    return resolved.get() if isinstance(resolved, Secret) else resolved
