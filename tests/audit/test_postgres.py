"""What only the PostgreSQL sink does: one chain from two writer processes, tamper checks on rows, the CLI."""

from __future__ import annotations

import itertools
from pathlib import Path

import anyio
import psycopg
import pytest
from psycopg import sql

from mcplane.audit import JsonlSink, verify_file, verify_postgres
from mcplane.audit.postgres import PostgresSink
from mcplane.audit.verify import main
from tests.audit.conftest import free_port, run_writer_processes


def _ident(table: str) -> sql.Identifier:
    return sql.Identifier(*table.split("."))


def test_two_writer_processes_extend_one_chain(postgres_dsn: str, pg_table: str) -> None:
    run_writer_processes("postgres", postgres_dsn, pg_table, count=100)
    with psycopg.connect(postgres_dsn) as conn:
        rows = conn.execute(
            sql.SQL("SELECT record::jsonb ->> 'writer' FROM {} ORDER BY seq").format(_ident(pg_table))
        ).fetchall()
    writers = [row[0] for row in rows]
    assert sorted(set(writers)) == ["w0", "w1"]
    # Released together, the two really did contend: their records interleave in the one chain.
    assert any(a != b for a, b in itertools.pairwise(writers[2:]))
    assert main(["--dsn", postgres_dsn, "--table", pg_table]) == 0


async def test_the_table_is_created_with_its_columns(postgres_dsn: str, pg_table: str) -> None:
    sink = PostgresSink(postgres_dsn, table=pg_table)
    [record] = await sink.append([{"name": "a"}])
    await sink.aclose()
    with psycopg.connect(postgres_dsn) as conn:
        row = conn.execute(
            sql.SQL("SELECT seq, hash, prev_hash, record::jsonb ->> 'name', recorded_at IS NOT NULL FROM {}").format(
                _ident(pg_table)
            )
        ).fetchone()
    assert row == (1, record["hash"], record["prev_hash"], "a", True)


def test_the_description_names_no_credentials() -> None:
    sink = PostgresSink("postgresql://app:s3cr3t-pw@db.internal:6543/audit", table="ops.audit")
    assert sink.description == "postgresql://db.internal:6543/audit table ops.audit"


@pytest.mark.parametrize("table", ["a.b.c", "drop table x;", "1abc", ""])
def test_a_bad_table_name_is_refused(table: str) -> None:
    with pytest.raises(ValueError, match="invalid audit table name"):
        PostgresSink("postgresql://x@127.0.0.1/db", table=table)


async def test_verify_names_an_edited_and_a_deleted_row(postgres_dsn: str, pg_table: str) -> None:
    sink = PostgresSink(postgres_dsn, table=pg_table)
    await sink.append([{"name": f"t{i}"} for i in range(10)])
    await sink.aclose()
    assert (await verify_postgres(postgres_dsn, pg_table)).ok
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("UPDATE {} SET record = replace(record, '\"t6\"', '\"t6x\"') WHERE seq = 7").format(
                _ident(pg_table)
            )
        )
    report = await verify_postgres(postgres_dsn, pg_table)
    assert report.render() == "record 7 (row 7): hash mismatch (edited)"
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DELETE FROM {} WHERE seq IN (3, 7)").format(_ident(pg_table)))
    report = await verify_postgres(postgres_dsn, pg_table)
    assert report.render() == "record 3 missing (deleted)"


def test_cli_takes_the_dsn_as_a_secret_reference(
    postgres_dsn: str, pg_table: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def fill() -> None:
        sink = PostgresSink(postgres_dsn, table=pg_table)
        await sink.append([{"i": i} for i in range(3)])
        await sink.aclose()

    anyio.run(fill)
    monkeypatch.setenv("MCPLANE_TEST_AUDIT_DSN", postgres_dsn)
    assert main(["--dsn", "${env:MCPLANE_TEST_AUDIT_DSN}", "--table", pg_table]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "ok: 3 records"


def test_cli_reports_a_missing_table_with_exit_two(postgres_dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--dsn", postgres_dsn, "--table", "no_such_schema_x.audit"]) == 2
    assert "UndefinedTable" in capsys.readouterr().err


async def test_both_sinks_write_the_same_chain_format(postgres_dsn: str, pg_table: str, tmp_path: Path) -> None:
    entries = [{"name": f"t{i}", "args_sha256": "ab" * 32, "duration_ms": 1.25, "tenant": None} for i in range(5)]
    file_sink, pg_sink = JsonlSink(tmp_path / "audit.jsonl"), PostgresSink(postgres_dsn, table=pg_table)
    try:
        await file_sink.append(entries)
        await pg_sink.append(entries)
        file_lines, pg_lines = await file_sink.read_lines(), await pg_sink.read_lines()
    finally:
        await file_sink.aclose()
        await pg_sink.aclose()
    assert file_lines == pg_lines
    assert verify_file(tmp_path / "audit.jsonl").head_hash == (await verify_postgres(postgres_dsn, pg_table)).head_hash


async def test_ping_fails_on_a_closed_port_and_recovers_on_the_real_server(postgres_dsn: str, pg_table: str) -> None:
    dead = PostgresSink(f"postgresql://postgres@127.0.0.1:{free_port()}/test", table=pg_table, connect_timeout=2)
    with pytest.raises(psycopg.OperationalError):
        await dead.ping()
    live = PostgresSink(postgres_dsn, table=pg_table)
    await live.ping()
    await live.aclose()
