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

Table (created if missing, under the same lock)::

    seq bigint primary key, hash text, prev_hash text, record text, recorded_at timestamptz

``record`` is the record's canonical JSON, exactly as a JSONL line; query it as
``record::jsonb``. Grant the plane's role only ``INSERT`` and ``SELECT`` on it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import anyio
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from mcplane.audit.chain import GENESIS, canonical, seal
from mcplane.secrets import Secret

__all__ = ["DEFAULT_TABLE", "PostgresSink", "iter_postgres_lines"]

DEFAULT_TABLE = "mcplane_audit"
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")


def _table_ident(table: str) -> sql.Identifier:
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
    ) -> None:
        self._dsn = dsn
        self.table = table
        self._ident = _table_ident(table)
        self._key = _lock_key(table)
        self.connect_timeout = connect_timeout
        self.create_table = create_table
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._lock = anyio.Lock()
        self._created = False

    @property
    def description(self) -> str:
        return f"{describe_dsn(self._dsn)} table {self.table}"

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        conn = self._conn
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        self._conn = None
        conn = await psycopg.AsyncConnection.connect(
            _reveal(self._dsn), autocommit=True, connect_timeout=self.connect_timeout
        )
        try:
            if self.create_table and not self._created:
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._key,))
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
                self._created = True
        except BaseException:
            await conn.close()
            raise
        self._conn = conn
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
                    cur = await conn.execute(
                        sql.SQL("SELECT seq, hash FROM {} ORDER BY seq DESC LIMIT 1").format(self._ident)
                    )
                    row = await cur.fetchone()
                    seq, prev = (int(row[0]), str(row[1])) if row else (0, GENESIS)
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
                return records
            except BaseException:
                await self._drop_connection()  # reconnect on the next append
                raise

    async def ping(self) -> None:
        async with self._lock:
            try:
                conn = await self._connection()
                await conn.execute("SELECT 1")
            except BaseException:
                await self._drop_connection()
                raise

    async def read_lines(self) -> list[str]:
        async with self._lock:
            await self._connection()  # creates the table if missing
        return [line async for line in iter_postgres_lines(self._dsn, self.table)]

    async def aclose(self) -> None:
        async with self._lock:
            await self._drop_connection()


async def iter_postgres_lines(dsn: str | Secret, table: str = DEFAULT_TABLE) -> AsyncIterator[str]:
    """Every record of ``table`` as canonical JSON text, in ``seq`` order, streamed."""
    ident = _table_ident(table)
    async with await psycopg.AsyncConnection.connect(_reveal(dsn), autocommit=True) as conn:
        cur = conn.cursor()
        async for row in cur.stream(sql.SQL("SELECT record FROM {} ORDER BY seq").format(ident)):
            yield str(row[0])
