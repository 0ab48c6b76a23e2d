"""Whether an audit log is complete: its chain across segments, held against its signed checkpoints.

:func:`check` takes a :class:`LogSource` (a JSONL log's segments, a PostgreSQL table, an export
archive: see :func:`file_source`, :func:`postgres_source`, :func:`mcplane.audit.export.archive_source`)
and finds, beyond the chain's own problems (:mod:`.verify`):

- **truncated**: a valid checkpoint covers a record the log no longer has (its tail was cut, its
  last segment deleted);
- **replaced**: a checkpoint's record is there, but with another hash (the log, or its tail, was
  rewritten as another valid chain);
- **forged**: a checkpoint whose signature does not verify with a trusted key, or that is not a
  checkpoint at all;
- **no checkpoints**: a log with records and nowhere a checkpoint (the store was deleted).

It reports the latest valid checkpoint: the records and time span it covers, and how many
records come after it (not yet covered).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from mcplane.audit.checkpoint import describe, parse_checkpoint, records_text, signature_problem
from mcplane.audit.keys import key_id, load_private_key, public_text
from mcplane.audit.segments import discover
from mcplane.audit.verify import Row, VerifyReport, parse_row, verify_rows

__all__ = ["CompletenessReport", "LogSource", "Segment", "check", "file_source", "postgres_source"]

_MAX_FINDINGS = 5


@dataclass(frozen=True)
class Segment:
    name: str
    lines: list[bytes]
    first_seq: int | None = None
    """What the segment's name says its first record is (sealed segments), else ``None``."""


@dataclass
class LogSource:
    description: str
    segments: list[Segment]
    checkpoints: list[bytes] | None
    """The checkpoint store's lines (rows), or ``None`` when there is no store."""
    checkpoints_name: str
    unit: str = "line"
    keys: list[tuple[Ed25519PublicKey, str]] = field(default_factory=list[tuple[Ed25519PublicKey, str]])
    """Keys found with the log, and where: used when no ``--public-key`` is given."""
    partial_checkpoint: bool = False
    """The store ends in a partial line (an interrupted write), left out of :attr:`checkpoints`."""


@dataclass
class CompletenessReport:
    chain: VerifyReport
    findings: list[str]
    notes: list[str]

    @property
    def ok(self) -> bool:
        return self.chain.ok and not self.findings

    def render(self) -> str:
        lines: list[str] = []
        if self.chain.problem is not None:
            lines.append(self.chain.problem.message)
        lines += self.findings
        if not self.ok:
            return "\n".join(lines)
        return "\n".join([*self.notes, f"head: seq {self.chain.head_seq} hash {self.chain.head_hash}"])


def _split(data: bytes) -> tuple[list[bytes], bool]:
    """Lines of ``data`` (split on ``\\n`` only) and whether it ended in a partial line."""
    if not data:
        return [], False
    parts = data.split(b"\n")
    partial = parts[-1] != b""
    return parts[:-1] if not partial else parts, partial


def store_lines(data: bytes) -> tuple[list[bytes], bool]:
    """A checkpoint store's complete lines, and whether it ended in a partial one (left out)."""
    lines, partial = _split(data)
    return (lines[:-1] if partial else lines), partial


def store_keys(store: Path) -> list[tuple[Ed25519PublicKey, str]]:
    """The public half of the key generated beside a checkpoint store, if there is one."""
    key_file = store.with_name(store.name + ".key")
    if not key_file.exists():
        return []
    key = load_private_key(key_file.read_text(encoding="ascii")).public_key()
    return [(key, f"from {key_file.name} beside the log")]


def file_source(target: str | Path, checkpoints: str | Path | None = None) -> LogSource:
    """A JSONL log (its active segment's path, or a directory holding it and its sealed segments)."""
    files = discover(target)
    paths = files.files()
    if not paths:
        raise FileNotFoundError(f"no audit log at {target}")
    sealed = {path: first for first, path in files.sealed()}
    segments = [Segment(path.name, _split(path.read_bytes())[0], sealed.get(path)) for path in paths]
    store = Path(checkpoints) if checkpoints is not None else files.checkpoints_path
    lines: list[bytes] | None = None
    partial = False
    if store.exists():
        lines, partial = store_lines(store.read_bytes())
    description = str(files.path) if len(segments) == 1 else f"{files.name} in {files.directory}"
    return LogSource(description, segments, lines, store.name, keys=store_keys(store), partial_checkpoint=partial)


async def postgres_source(dsn: str, table: str, checkpoint_table: str | None = None) -> LogSource:
    """A PostgreSQL audit table and its checkpoints table."""
    import psycopg
    from psycopg import sql

    from mcplane.audit.postgres import checkpoint_table_of, iter_postgres_lines, table_ident

    records = [line.encode() async for line in iter_postgres_lines(dsn, table)]
    cp_table = checkpoint_table or checkpoint_table_of(table)
    lines: list[bytes] | None = None
    keys: list[tuple[Ed25519PublicKey, str]] = []
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        found = await (await conn.execute("SELECT to_regclass(%s)", (cp_table,))).fetchone()
        if found is not None and found[0] is not None:
            cur = await conn.execute(sql.SQL("SELECT checkpoint FROM {} ORDER BY id").format(table_ident(cp_table)))
            lines = [str(row[0]).encode() for row in await cur.fetchall()]
        key_table = f"{cp_table}_key"
        found = await (await conn.execute("SELECT to_regclass(%s)", (key_table,))).fetchone()
        if found is not None and found[0] is not None:
            cur = await conn.execute(sql.SQL("SELECT private_key FROM {}").format(table_ident(key_table)))
            for row in await cur.fetchall():
                keys.append((load_private_key(str(row[0])).public_key(), f"from table {key_table}"))
    return LogSource(f"table {table}", [Segment(table, records)], lines, cp_table, unit="row", keys=keys)


def check(
    source: LogSource,
    trusted: Sequence[tuple[Ed25519PublicKey, str]] | None,
    *,
    checkpoints: bool = True,
) -> CompletenessReport:
    """Verify ``source``'s chain and, unless ``checkpoints`` is false, hold it against its checkpoints
    signed by a ``trusted`` key (``None``: the keys found with the log)."""
    rows: list[Row] = []
    places: list[tuple[str, int]] = []
    segment_of: list[int] = []
    findings: list[str] = []
    for segment in source.segments:
        parsed = [parse_row(line) for line in segment.lines]
        if segment.first_seq is not None and parsed and parsed[0].seq not in (None, segment.first_seq):
            findings.append(
                f"{segment.name}: named for record {segment.first_seq}, but its first record is {parsed[0].seq} "
                "(renamed)"
            )
        first = segment.first_seq if segment.first_seq is not None else (parsed[0].seq if parsed else None)
        rows += parsed
        places += [(segment.name, k + 1) for k in range(len(parsed))]
        segment_of += [first if first is not None else -1] * len(parsed)
    if len(source.segments) == 1:
        unit = source.unit
        chain = verify_rows(rows, locate=lambda i: f"{unit} {i + 1}")
    else:
        chain = verify_rows(rows, locate=lambda i: f"{places[i][0]} {source.unit} {places[i][1]}")
    span = f", {chain.first_time} to {chain.last_time}" if chain.first_time else ""
    segments = f", in {len(source.segments)} segments" if len(source.segments) > 1 else ""
    records = f" (seq 1-{chain.head_seq}{span}{segments})" if chain.count else ""
    notes = [f"ok: {chain.count} records{records}"]
    if not checkpoints:
        notes.append("checkpoints: not checked (--no-checkpoints): a truncated or replaced log goes unnoticed")
        return CompletenessReport(chain, findings, notes)
    _hold_against_checkpoints(source, trusted, rows, segment_of, chain, findings, notes)
    return CompletenessReport(chain, findings, notes)


def _hold_against_checkpoints(
    source: LogSource,
    trusted: Sequence[tuple[Ed25519PublicKey, str]] | None,
    rows: list[Row],
    segment_of: list[int],
    chain: VerifyReport,
    findings: list[str],
    notes: list[str],
) -> None:
    name = source.checkpoints_name
    if not source.checkpoints:
        if rows:
            missing = "is missing" if source.checkpoints is None else "holds none"
            findings.append(
                f"no checkpoints: {name} {missing}, so a truncated or replaced log cannot be told apart "
                "(deleted? --no-checkpoints checks the chain alone)"
            )
        else:
            notes.append("checkpoints: none (the log is empty)")
        return
    keys = list(trusted) if trusted is not None else source.keys
    if not keys:
        signers = sorted({str(c["key"]) for line in source.checkpoints if (c := parse_checkpoint(line)) is not None})
        raise LookupError(
            f"no key to check the checkpoints with (signed by key {', '.join(signers) or '?'}): "
            "give the signing key's --public-key"
        )
    keyring = {key_id(key): key for key, _ in keys}
    where_from = {key_id(key): f"{public_text(key)}, {origin}" for key, origin in keys}
    by_seq: dict[int, int] = {}
    for index, row in enumerate(rows):
        if row.seq is not None and row.intact:
            by_seq.setdefault(row.seq, index)
    last_seq = max(by_seq, default=0)
    problems: list[str] = []
    truncated: tuple[int, Mapping[str, Any]] | None = None
    latest: Mapping[str, Any] | None = None
    for number, line in enumerate(source.checkpoints, 1):
        at = f"{name} {source.unit} {number}"
        if not line.strip():
            continue
        checkpoint = parse_checkpoint(line)
        if checkpoint is None:
            problems.append(f"{at}: not a checkpoint (edited or forged)")
            continue
        problem = signature_problem(checkpoint, keyring)
        if problem is not None:
            problems.append(f"{at}: {describe(checkpoint)} {problem}")
            continue
        if latest is None or checkpoint["seq"] >= latest["seq"]:
            latest = checkpoint  # with several writers, the last one written may cover less
        seq = checkpoint["seq"]
        if seq == 0:
            continue
        index = by_seq.get(seq)
        if index is None:
            if seq > last_seq and (truncated is None or seq > truncated[0]):
                truncated = (seq, checkpoint)
            elif seq <= last_seq:
                problems.append(f"record {seq}, covered by {describe(checkpoint)}, is missing or damaged (deleted)")
        elif rows[index].hash != checkpoint["hash"]:
            problems.append(f"record {seq} does not match {describe(checkpoint)} (the log was replaced or rewritten)")
        elif isinstance(checkpoint.get("segment"), int) and checkpoint["segment"] != segment_of[index]:
            problems.append(
                f"record {seq} is in the segment from record {segment_of[index]}, but {describe(checkpoint)} puts it "
                f"in the segment from record {checkpoint['segment']} (segments renamed or merged)"
            )
    if truncated is not None:
        seq, checkpoint = truncated
        findings.append(
            f"truncated: the log ends at record {last_seq}, but {describe(checkpoint)} covers record {seq}: "
            f"{records_text(last_seq + 1, seq)} missing"
        )
    findings += problems[:_MAX_FINDINGS]
    if len(problems) > _MAX_FINDINGS:
        findings.append(f"... and {len(problems) - _MAX_FINDINGS} more checkpoint problems")
    if latest is None:
        if not findings:
            findings.append(f"no valid checkpoint in {name}")
        return
    covered = latest["seq"]
    first_time, last_time = latest.get("first_time"), latest.get("last_time")
    span = f", {first_time} to {last_time}" if first_time and last_time else ""
    ident = str(latest["key"])
    notes.append(
        f"checkpoint: the latest, of {latest.get('at')}, covers records 1-{covered}{span}; "
        f"signed by key {ident} ({where_from.get(ident, 'trusted')})"
    )
    after = max(0, chain.head_seq - covered)
    notes.append(f"after it: {after} records not yet covered by a checkpoint")
    if source.partial_checkpoint:
        notes.append(f"{name} ends in a partial line (a write interrupted by a crash): left out")
    if trusted is None and keys:
        notes.append("pin the key with --public-key to catch checkpoints re-signed with a key put in its place")
