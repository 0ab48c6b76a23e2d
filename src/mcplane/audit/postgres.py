"""The production audit sink: PostgreSQL, through psycopg 3 (async).

Why psycopg 3 rather than asyncpg: it is the maintained successor of psycopg2 by the same
maintainers, ships inline type hints (``py.typed``; asyncpg has none, and mcplane type-checks
strictly), composes identifiers safely (``psycopg.sql``), has a sync API for tools, and its
binary wheel needs no libpq on the host.

**One chain across writers.** Each append runs in one transaction that first takes a
transaction-scoped advisory lock (``pg_advisory_xact_lock``, keyed on the table name), then
reads the last ``(seq, hash)``, inserts the sealed records and commits, which releases the lock.
Any number of processes on any number of hosts therefore extend the same single chain; ``seq``
is also the primary key, so even a writer that skipped the lock could not fork the chain.

**Checkpoints** (see :mod:`mcplane.audit.checkpoint`) go to a separate table, in the same
transaction as the records they cover; before its first append a sink checks the chain's tail
against the latest one and refuses to extend a table that lost records (:class:`ChainBroken`).

Tables (created if missing, under the same lock)::

    <table>              seq bigint primary key, hash text, prev_hash text, record text, recorded_at timestamptz
    <table>_checkpoints  id bigserial primary key, seq bigint, hash text, checkpoint text, recorded_at timestamptz
    <table>_checkpoints_key   the generated checkpoint key, only when none is configured

``record`` is the record's canonical JSON, exactly as a JSONL line; query it as
``record::jsonb``. Grant the plane's role only ``INSERT`` and ``SELECT`` on the first two
(and on the key table when it is used).
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import anyio
import orjson
import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from mcplane.audit.chain import GENESIS, canonical, seal
from mcplane.audit.checkpoint import (
    RECENT,
    Anchor,
    ChainBroken,
    CheckpointOptions,
    Schedule,
    Signer,
    describe,
    highest_recent,
    log_checkpoint,
    make_checkpoint,
    records_text,
)
from mcplane.audit.keys import generate_private_pem, load_private_key
from mcplane.audit.verify import parse_row, verify_lines
from mcplane.secrets import Secret

__all__ = ["DEFAULT_TABLE", "ChainBroken", "PostgresSink", "checkpoint_table_of", "iter_postgres_lines", "table_ident"]

logger = logging.getLogger("mcplane.audit")

DEFAULT_TABLE = "mcplane_audit"
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")


def table_ident(table: str) -> sql.Identifier:
    """``table`` (``name`` or ``schema.name``) as a quoted SQL identifier; ``ValueError`` if it is neither.

    Config validation calls it too, so a bad table name stops the start rather than the first write.
    """
    parts = table.split(".")
    if len(parts) > 2 or not all(_IDENT.match(part) for part in parts):
        raise ValueError(f"invalid audit table name {table!r}: use 'table' or 'schema.table'")
    return sql.Identifier(*parts)


def _lock_key(table: str) -> int:
    digest = hashlib.sha256(f"mcplane.audit:{table}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _reveal(dsn: str | Secret) -> str:
    return dsn.get() if isinstance(dsn, Secret) else dsn


def describe_dsn(dsn: str | Secret) -> str:
    """``postgresql://host:port/dbname``: where, never who or with what password."""
    try:
        info = conninfo_to_dict(_reveal(dsn))
    except psycopg.ProgrammingError:
        return "postgresql://(invalid dsn)"
    return f"postgresql://{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"


class PostgresSink:
    def __init__(
        self,
        dsn: str | Secret,
        *,
        table: str = DEFAULT_TABLE,
        connect_timeout: int = 5,
        create_table: bool = True,
        checkpoints: CheckpointOptions | None = CheckpointOptions(),
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._dsn = dsn
        self.table = table
        self._ident = table_ident(table)
        self._key = _lock_key(table)
        self.connect_timeout = connect_timeout
        self.create_table = create_table
        self.checkpoint_table = (checkpoints.location if checkpoints else None) or checkpoint_table_of(table)
        self._cp_ident = table_ident(self.checkpoint_table)
        self._key_ident = table_ident(f"{self.checkpoint_table}_key")
        self._wall = wall
        self._signer: Signer | None = None
        self._schedule: Schedule | None = None
        self._stored_key: Ed25519PrivateKey | None = None
        if checkpoints is not None:
            self._signer = Signer(checkpoints.key, self._default_key, checkpoints.trusted_keys)
            self._schedule = Schedule(checkpoints.every, checkpoints.interval, clock)
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._lock = anyio.Lock()
        self._created = False
        self._verified = checkpoints is None
        self.broken: str | None = None
        """Why the chain cannot be extended (``None``: it can, or was not checked yet)."""
        self._seen = 0
        self._opened = False
        self._last: Anchor | None = None
        self._first_time: str | None = None

    @property
    def description(self) -> str:
        return f"{describe_dsn(self._dsn)} table {self.table}"

    @property
    def generated_key(self) -> bool:
        """Checkpoints are signed with the key generated into the database (no key was configured)."""
        return self._signer is not None and self._signer.generated

    @property
    def key_location(self) -> str:
        """Where a generated checkpoint key is kept (named in the warning that one was generated)."""
        return f"table {self.checkpoint_table}_key"

    def _default_key(self) -> Ed25519PrivateKey:
        if self._stored_key is None:
            raise RuntimeError("the checkpoint key was not read from the database yet")
        return self._stored_key

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        conn = await psycopg.AsyncConnection.connect(
            _reveal(self._dsn), autocommit=True, connect_timeout=self.connect_timeout
        )
        try:
            if (self.create_table and not self._created) or (self.generated_key and self._stored_key is None):
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._key,))
                    if self.create_table and not self._created:
                        await self._create_tables(conn)
                    if self.generated_key and self._stored_key is None:
                        self._stored_key = await self._load_or_create_key(conn)
                self._created = True
        except BaseException:
            await conn.close()
            raise
        return conn

    async def _create_tables(self, conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                " seq bigint PRIMARY KEY,"
                " hash text NOT NULL,"
                " prev_hash text NOT NULL,"
                " record text NOT NULL,"
                " recorded_at timestamptz NOT NULL DEFAULT now())"
            ).format(self._ident)
        )
        if self._signer is None:
            return
        await conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                " id bigserial PRIMARY KEY,"
                " seq bigint NOT NULL,"
                " hash text NOT NULL,"
                " checkpoint text NOT NULL,"
                " recorded_at timestamptz NOT NULL DEFAULT now())"
            ).format(self._cp_ident)
        )

    async def _load_or_create_key(self, conn: psycopg.AsyncConnection[Any]) -> Ed25519PrivateKey:
        await conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                " id int PRIMARY KEY DEFAULT 1 CHECK (id = 1),"
                " private_key text NOT NULL,"
                " created_at timestamptz NOT NULL DEFAULT now())"
            ).format(self._key_ident)
        )
        cur = await conn.execute(
            sql.SQL("INSERT INTO {} (id, private_key) VALUES (1, %s) ON CONFLICT (id) DO NOTHING").format(
                self._key_ident
            ),
            (generate_private_pem(),),
        )
        if cur.rowcount:
            logger.warning("audit: generated the checkpoint key in table %s_key", self.checkpoint_table)
        cur = await conn.execute(sql.SQL("SELECT private_key FROM {} WHERE id = 1").format(self._key_ident))
        row = await cur.fetchone()
        assert row is not None
        return load_private_key(str(row[0]))

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        conn = self._conn
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        self._conn = None
        self._conn = conn = await self._connect()
        return conn

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with anyio.CancelScope(shield=True):
                await conn.close()

    async def append(self, entries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        if not entries:
            return []
        async with self._lock:
            try:
                conn = await self._connection()
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._key,))
                    if not self._verified:
                        await self._verify(conn)
                    head = await self._head(conn)
                    emitted = False
                    if self._signer is not None and not self._opened:
                        await self._insert_checkpoint(conn, head, "open")
                        emitted = True
                    seq, prev = head.seq, head.hash
                    records: list[dict[str, Any]] = []
                    for entry in entries:
                        record = seal(entry, seq + 1, prev)
                        seq, prev = record["seq"], record["hash"]
                        records.append(record)
                    async with conn.cursor() as insert:
                        await insert.executemany(
                            sql.SQL("INSERT INTO {} (seq, hash, prev_hash, record) VALUES (%s, %s, %s, %s)").format(
                                self._ident
                            ),
                            [(r["seq"], r["hash"], r["prev_hash"], canonical(r).decode()) for r in records],
                        )
                    last = Anchor(seq, prev, self.table, None, _time_of(records[-1]))
                    if self._first_time is None and records[0]["seq"] == 1:
                        self._first_time = _time_of(records[0])
                    schedule = self._schedule
                    reason = schedule.due(len(records)) if schedule is not None else None
                    if reason is not None:
                        await self._insert_checkpoint(conn, last, reason)
                        emitted = True
                # committed: the records, and any checkpoint with them
                self._opened = self._opened or self._signer is not None
                self._last, self._seen = last, seq
                if self._schedule is not None:
                    if emitted:
                        self._schedule.done()
                    if reason is None:
                        self._schedule.add(len(records))
                return records
            except BaseException:
                await self._drop_connection()  # reconnect on the next append
                raise

    async def _head(self, conn: psycopg.AsyncConnection[Any]) -> Anchor:
        cur = await conn.execute(
            sql.SQL("SELECT seq, hash, record FROM {} ORDER BY seq DESC LIMIT 1").format(self._ident)
        )
        row = await cur.fetchone()
        if row is None:
            head = Anchor(0, GENESIS, self.table, None, None)
        else:
            head = Anchor(int(row[0]), str(row[1]), self.table, None, _time_of(_loads(str(row[2]))))
        if head.seq < self._seen:
            raise self._break(
                f"table {self.table} now ends at record {head.seq}, but record {self._seen} was written "
                "(rows deleted or the table replaced while it was in use)"
            )
        return head

    async def _insert_checkpoint(self, conn: psycopg.AsyncConnection[Any], anchor: Anchor, reason: str) -> None:
        assert self._signer is not None
        if self._first_time is None and anchor.seq > 0:
            cur = await conn.execute(sql.SQL("SELECT record FROM {} ORDER BY seq LIMIT 1").format(self._ident))
            row = await cur.fetchone()
            self._first_time = _time_of(_loads(str(row[0]))) if row is not None else None
        body = make_checkpoint(anchor, log=self.table, first_time=self._first_time, reason=reason, at=self._wall())
        checkpoint = self._signer.sign(body)
        await conn.execute(
            sql.SQL("INSERT INTO {} (seq, hash, checkpoint) VALUES (%s, %s, %s)").format(self._cp_ident),
            (anchor.seq, anchor.hash, canonical(checkpoint).decode()),
        )
        log_checkpoint(self.description, checkpoint)

    def _break(self, reason: str) -> ChainBroken:
        self.broken, self._verified = reason, False
        return ChainBroken(reason)

    async def _verify(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Check the chain's tail against the latest checkpoint (inside the append lock's transaction)."""
        assert self._signer is not None
        head = await self._head(conn)
        cur = await conn.execute(
            sql.SQL("SELECT checkpoint FROM {} ORDER BY id DESC LIMIT %s").format(self._cp_ident), (RECENT,)
        )
        recent = [str(row[0]) for row in reversed(await cur.fetchall())]
        try:
            checkpoint = highest_recent(recent, self._signer.keyring(), self.checkpoint_table)
        except ChainBroken as exc:
            raise self._break(exc.reason) from None
        if checkpoint is None:
            if head.seq > 0:
                raise self._break(
                    f"table {self.table} holds records up to {head.seq} but {self.checkpoint_table} has no checkpoint "
                    "(deleted, or the table predates checkpoints: check it with `mcplane audit verify "
                    "--no-checkpoints`, then start a new table)"
                )
        else:
            await self._check_tail(conn, head, checkpoint)
            first_time = checkpoint.get("first_time")
            self._first_time = first_time if isinstance(first_time, str) else None
        self._verified, self.broken = True, None

    async def _check_tail(
        self, conn: psycopg.AsyncConnection[Any], head: Anchor, checkpoint: Mapping[str, Any]
    ) -> None:
        seq, digest, where = checkpoint["seq"], checkpoint["hash"], describe(checkpoint)
        if head.seq < seq:
            raise self._break(
                f"table {self.table} ends at record {head.seq}, but {where} covers record {seq}: "
                f"{records_text(head.seq + 1, seq)} missing (truncated or deleted)"
            )
        cur = await conn.execute(
            sql.SQL("SELECT record FROM {} WHERE seq >= %s ORDER BY seq").format(self._ident), (max(seq, 1),)
        )
        lines = [str(row[0]) for row in await cur.fetchall()]
        if seq > 0:
            found = parse_row(lines[0]) if lines else None
            if found is None or found.seq != seq or found.hash != digest or not found.intact:
                raise self._break(
                    f"record {seq} of table {self.table} does not match {where} (the table was replaced or rewritten)"
                )
            lines = lines[1:]
        report = verify_lines(lines, start=(seq, digest), locate=lambda i: f"row {seq + 1 + i}")
        if report.problem is not None:
            raise self._break(f"after {where}: {report.problem.message}")

    def verify_at_start(self) -> str | None:
        """Check the chain's tail against the latest checkpoint now, blocking this thread (on a connection
        of its own, in a thread of its own); why it is broken, or ``None``. A database that cannot be
        reached now is checked again before the first append."""
        if self._signer is None:
            return None
        outcome: list[BaseException] = []

        async def check() -> None:
            conn = await self._connect()
            try:
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._key,))
                    await self._verify(conn)
            finally:
                await conn.close()

        def run() -> None:
            try:
                anyio.run(check)
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=run, name="mcplane-audit-check")
        thread.start()
        thread.join()
        if not outcome:
            return None
        if isinstance(outcome[0], ChainBroken):
            return outcome[0].reason
        logger.warning(
            "audit: cannot check %s at start (%s); checking before the first append",
            self.description,
            type(outcome[0]).__name__,
        )
        return None

    async def checkpoint(self) -> None:
        """Write a checkpoint now if one is due (the ``interval`` passed with records not yet covered)."""
        if self._schedule is None or self._schedule.due() is None or self._last is None:
            return
        async with self._lock:
            last = self._last
            try:
                conn = await self._connection()
                await self._insert_checkpoint(conn, last, "interval")
            except Exception:
                await self._drop_connection()
                logger.exception("audit: could not write a checkpoint to %s; retrying later", self.checkpoint_table)
            else:
                self._schedule.done()

    async def ping(self) -> None:
        async with self._lock:
            try:
                conn = await self._connection()
                await conn.execute("SELECT 1")
                if not self._verified:
                    async with conn.transaction():
                        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._key,))
                        await self._verify(conn)
            except BaseException:
                await self._drop_connection()
                raise

    async def read_lines(self) -> list[str]:
        async with self._lock:
            await self._connection()  # creates the table if missing
        return [line async for line in iter_postgres_lines(self._dsn, self.table)]

    async def aclose(self) -> None:
        async with self._lock:
            schedule, last = self._schedule, self._last
            if schedule is not None and last is not None and schedule.pending and self._verified:
                try:
                    conn = await self._connection()
                    await self._insert_checkpoint(conn, last, "shutdown")
                    schedule.done()
                except Exception:
                    logger.exception("audit: could not write the shutdown checkpoint to %s", self.checkpoint_table)
            self._opened, self._last = False, None
            self._verified = self._signer is None
            await self._drop_connection()


def checkpoint_table_of(table: str) -> str:
    """The checkpoints table that goes with an audit table: ``<table>_checkpoints``."""
    return f"{table}_checkpoints"


def _loads(text: str) -> dict[str, Any]:
    try:
        value: Any = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}  # pyright: ignore[reportUnknownVariableType]


def _time_of(record: Mapping[str, Any]) -> str | None:
    value = record.get("time")
    return value if isinstance(value, str) else None


async def iter_postgres_lines(dsn: str | Secret, table: str = DEFAULT_TABLE) -> AsyncIterator[str]:
    """Every record of ``table`` as canonical JSON text, in ``seq`` order, streamed."""
    ident = table_ident(table)
    async with await psycopg.AsyncConnection.connect(_reveal(dsn), autocommit=True) as conn:
        cur = conn.cursor()
        async for row in cur.stream(sql.SQL("SELECT record FROM {} ORDER BY seq").format(ident)):
            yield str(row[0])
