"""What only the PostgreSQL sink does: one chain from two writer processes, tamper checks on rows, the CLI,
and the same checkpoints as a file: a deleted tail, a replaced table and a forged checkpoint are caught by
``mcplane audit verify`` and before the sink appends; ``mcplane run`` refuses to start on them."""

from __future__ import annotations

import itertools
import os
import subprocess
from pathlib import Path

import anyio
import orjson
import psycopg
import pytest
from psycopg import sql

from mcplane.audit import ChainBroken, CheckpointOptions, JsonlSink, verify_file, verify_postgres
from mcplane.audit.chain import canonical
from mcplane.audit.checkpoint import Anchor, Signer, make_checkpoint
from mcplane.audit.keys import generate_private_pem, load_private_key, public_text
from mcplane.audit.postgres import PostgresSink
from mcplane.audit.verify import main
from mcplane.audit.writer import AuditWriter
from mcplane.errors import DependencyUnavailable
from tests.audit.conftest import HOSTILE_APP, AuditedServer, free_port, run_writer_processes
from tests.conftest import REPO_ROOT, mcplane_command, start_server


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
    assert capsys.readouterr().out.splitlines()[0] == "ok: 3 records (seq 1-3)"


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


# ---------------------------------------------------------------------------------------------- checkpoints
def _entry(i: int) -> dict[str, object]:
    return {"name": f"tool{i}", "time": f"2026-03-01T10:00:{i:02d}.000Z"}


async def _fill(dsn: str, table: str, count: int, **options: object) -> None:
    sink = PostgresSink(dsn, table=table, **options)  # type: ignore[arg-type]
    for i in range(count):
        await sink.append([_entry(i)])
    await sink.aclose()


def _execute(dsn: str, statement: sql.Composable, *params: object) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(statement, params or None)
        return cur.fetchall() if cur.description is not None else []


def _checkpoints(dsn: str, table: str) -> list[dict[str, object]]:
    rows = _execute(dsn, sql.SQL("SELECT checkpoint FROM {} ORDER BY id").format(_ident(f"{table}_checkpoints")))
    return [orjson.loads(str(row[0])) for row in rows]


async def _cli(argv: list[str]) -> int:
    """``mcplane audit verify`` from an async test (it runs an event loop of its own)."""
    return await anyio.to_thread.run_sync(main, argv)


async def _started(dsn: str, table: str, **options: object) -> tuple[str | None, PostgresSink]:
    sink = PostgresSink(dsn, table=table, **options)  # type: ignore[arg-type]
    return sink.verify_at_start(), sink


async def test_checkpoints_go_to_their_own_table_with_the_records_they_cover(postgres_dsn: str, pg_table: str) -> None:
    await _fill(postgres_dsn, pg_table, 7, checkpoints=CheckpointOptions(every=3))
    assert [(c["reason"], c["seq"]) for c in _checkpoints(postgres_dsn, pg_table)] == [
        ("open", 0),
        ("records", 3),
        ("records", 6),
        ("shutdown", 7),
    ]
    latest = _checkpoints(postgres_dsn, pg_table)[-1]
    assert (latest["segment"], latest["first_time"], latest["last_time"]) == (
        pg_table,
        "2026-03-01T10:00:00.000Z",
        "2026-03-01T10:00:06.000Z",
    )
    report = await verify_postgres(postgres_dsn, pg_table)
    assert latest["hash"] == report.head_hash


@pytest.mark.parametrize(("deleted", "missing"), [(1, "record 12 missing"), (3, "records 10-12 missing")])
async def test_a_deleted_tail_of_rows_is_caught(
    postgres_dsn: str, pg_table: str, capsys: pytest.CaptureFixture[str], deleted: int, missing: str
) -> None:
    await _fill(postgres_dsn, pg_table, 12)
    _execute(postgres_dsn, sql.SQL("DELETE FROM {} WHERE seq > %s").format(_ident(pg_table)), 12 - deleted)
    assert (await verify_postgres(postgres_dsn, pg_table)).ok  # the chain alone cannot tell
    assert await _cli(["--dsn", postgres_dsn, "--table", pg_table]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"truncated: the log ends at record {12 - deleted}, but the checkpoint of ")
    assert out.rstrip().endswith(f"covers record 12: {missing}")
    broken, sink = await _started(postgres_dsn, pg_table)
    assert broken is not None
    assert f"table {pg_table} ends at record {12 - deleted}" in broken
    with pytest.raises(ChainBroken):
        await sink.append([_entry(99)])
    await sink.aclose()
    rows = _execute(postgres_dsn, sql.SQL("SELECT count(*) FROM {}").format(_ident(pg_table)))
    assert rows == [(12 - deleted,)]


async def test_a_replaced_table_is_caught(postgres_dsn: str, pg_table: str, capsys: pytest.CaptureFixture[str]) -> None:
    await _fill(postgres_dsn, pg_table, 5)
    _execute(postgres_dsn, sql.SQL("DELETE FROM {}").format(_ident(pg_table)))
    forged = PostgresSink(postgres_dsn, table=pg_table, checkpoints=None)  # a valid chain of other rows
    await forged.append([{**_entry(i), "subject": "mallory"} for i in range(8)])
    await forged.aclose()
    assert (await verify_postgres(postgres_dsn, pg_table)).ok
    assert await _cli(["--dsn", postgres_dsn, "--table", pg_table]) == 1
    assert "record 5 does not match the checkpoint of " in capsys.readouterr().out
    broken, sink = await _started(postgres_dsn, pg_table)
    assert broken is not None
    assert f"record 5 of table {pg_table} does not match the checkpoint of " in broken
    await sink.aclose()


async def test_a_checkpoint_signed_with_another_key_is_caught(
    postgres_dsn: str, pg_table: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await _fill(postgres_dsn, pg_table, 6)
    _execute(postgres_dsn, sql.SQL("DELETE FROM {} WHERE seq > 4").format(_ident(pg_table)))
    head = (await verify_postgres(postgres_dsn, pg_table)).head_hash
    other = generate_private_pem()
    key = load_private_key(other)
    body = make_checkpoint(Anchor(4, head, pg_table, None, None), log=pg_table, first_time=None, reason="records", at=0)
    forged = Signer(other, lambda: key).sign(body)
    _execute(
        postgres_dsn,
        sql.SQL("INSERT INTO {} (seq, hash, checkpoint) VALUES (%s, %s, %s)").format(_ident(f"{pg_table}_checkpoints")),
        4,
        head,
        canonical(forged).decode(),
    )
    assert await _cli(["--dsn", postgres_dsn, "--table", pg_table]) == 1
    out = capsys.readouterr().out
    assert "which is not trusted (forged" in out
    assert "truncated: the log ends at record 4" in out
    broken, sink = await _started(postgres_dsn, pg_table)
    assert broken is not None
    assert "not trusted (forged" in broken
    await sink.aclose()


async def test_a_table_with_rows_and_no_checkpoints_is_refused(postgres_dsn: str, pg_table: str) -> None:
    await _fill(postgres_dsn, pg_table, 3)
    _execute(postgres_dsn, sql.SQL("DELETE FROM {}").format(_ident(f"{pg_table}_checkpoints")))
    broken, sink = await _started(postgres_dsn, pg_table)
    assert broken is not None
    assert "holds records up to 3 but" in broken
    await sink.aclose()


async def test_a_configured_key_needs_its_public_key_to_verify(
    postgres_dsn: str, pg_table: str, capsys: pytest.CaptureFixture[str]
) -> None:
    key = generate_private_pem()
    await _fill(postgres_dsn, pg_table, 3, checkpoints=CheckpointOptions(key=key))
    assert await _cli(["--dsn", postgres_dsn, "--table", pg_table]) == 2
    assert "no key to check the checkpoints with" in capsys.readouterr().err
    assert (
        await _cli(["--dsn", postgres_dsn, "--table", pg_table, "--public-key", public_text(load_private_key(key))])
        == 0
    )


def test_mcplane_run_refuses_a_table_that_lost_rows(postgres_dsn: str, pg_table: str, tmp_path: Path) -> None:
    env = {
        "MCPLANE__AUDIT__SINK": "postgres",
        "MCPLANE__AUDIT__DSN": postgres_dsn,
        "MCPLANE__AUDIT__TABLE": pg_table,
    }
    server = start_server(HOSTILE_APP, tmp_path=tmp_path, env=env)
    try:
        answer = AuditedServer(server, tmp_path / "unused").post(
            "tools/call", {"name": "add", "arguments": {"a": 1, "b": 2}}
        )
        assert answer.status_code == 200
    finally:
        assert server.stop() == 0
    assert main(["--dsn", postgres_dsn, "--table", pg_table]) == 0
    _execute(
        postgres_dsn,
        sql.SQL("DELETE FROM {} WHERE seq = (SELECT max(seq) FROM {})").format(_ident(pg_table), _ident(pg_table)),
    )
    done = subprocess.run(
        mcplane_command("run", str(HOSTILE_APP)),
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("mcplane: error: audit chain broken, refusing to start")


async def test_a_table_unreachable_at_start_is_checked_before_the_first_append(
    postgres_dsn: str, pg_table: str, caplog: pytest.LogCaptureFixture
) -> None:
    dead = PostgresSink(f"postgresql://postgres@127.0.0.1:{free_port()}/test", table=pg_table, connect_timeout=2)
    assert dead.verify_at_start() is None  # cannot tell now: said so, and checked before the first append
    assert "cannot check" in caplog.text
    await _fill(postgres_dsn, pg_table, 6)
    _execute(postgres_dsn, sql.SQL("DELETE FROM {} WHERE seq > 4").format(_ident(pg_table)))
    writer = AuditWriter(PostgresSink(postgres_dsn, table=pg_table))  # no start-up check ran
    with pytest.raises(DependencyUnavailable):
        await writer.write_pending(_entry(99))
    assert writer.broken is not None
    assert "ends at record 4" in writer.broken
    assert not await writer.flush()  # still broken: readiness stays down
    await writer.aclose()
    assert _execute(postgres_dsn, sql.SQL("SELECT max(seq) FROM {}").format(_ident(pg_table))) == [(4,)]
