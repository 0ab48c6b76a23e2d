"""Audit fixtures: a unique PostgreSQL schema per test, the two sinks, a manual clock, a flaky sink."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from mcplane.audit import AuditSink, JsonlSink
from mcplane.audit.postgres import PostgresSink

POSTGRES_DSN = os.environ.get("MCPLANE_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")

SinkFactory = Callable[[], AuditSink]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def postgres_dsn() -> str:
    """The shared PostgreSQL; skipped when absent, except under CI where a missing server is a failure."""
    try:
        with psycopg.connect(POSTGRES_DSN, connect_timeout=3):
            pass
    except psycopg.OperationalError:
        message = f"no PostgreSQL answering at {POSTGRES_DSN} (set MCPLANE_TEST_POSTGRES_DSN)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return POSTGRES_DSN


@pytest.fixture
def pg_table(postgres_dsn: str) -> Iterator[str]:
    """``schema.table`` in a schema made for this test and dropped after it."""
    schema = f"mcplane_audit_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield f"{schema}.audit"
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture(params=["jsonl", "postgres"])
def sink_factory(request: pytest.FixtureRequest, tmp_path: Path) -> SinkFactory:
    """Makes sinks onto one store: each call is a fresh instance (a restarted process)."""
    if request.param == "jsonl":
        path = tmp_path / "audit" / "audit.jsonl"
        return lambda: JsonlSink(path)
    dsn: str = request.getfixturevalue("postgres_dsn")
    table: str = request.getfixturevalue("pg_table")
    return lambda: PostgresSink(dsn, table=table)


@pytest.fixture
async def sink(sink_factory: SinkFactory) -> AsyncIterator[AuditSink]:
    made = sink_factory()
    try:
        yield made
    finally:
        await made.aclose()


class ManualClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FlakySink:
    """Wraps a real sink; fails every append while ``down`` is set."""

    def __init__(self, inner: AuditSink) -> None:
        self.inner = inner
        self.down = False
        self.attempts = 0

    @property
    def description(self) -> str:
        return f"flaky {self.inner.description}"

    async def append(self, entries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        self.attempts += 1
        if self.down:
            raise ConnectionError("audit store unreachable")
        return await self.inner.append(entries)

    async def ping(self) -> None:
        self.attempts += 1
        if self.down:
            raise ConnectionError("audit store unreachable")
        await self.inner.ping()

    async def read_lines(self) -> list[str]:
        return await self.inner.read_lines()

    async def aclose(self) -> None:
        await self.inner.aclose()


_WRITER = r"""
import sys

import anyio

from mcplane.audit.jsonl import JsonlSink
from mcplane.audit.postgres import PostgresSink


async def main(kind: str, target: str, table: str, name: str, count: int) -> None:
    sink = JsonlSink(target, fsync="never") if kind == "jsonl" else PostgresSink(target, table=table)
    await sink.append([{"writer": name, "i": -1}])
    print("ready", flush=True)
    sys.stdin.readline()
    for i in range(count):
        await sink.append([{"writer": name, "i": i}])
    await sink.aclose()


anyio.run(main, sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
"""


def run_writer_processes(kind: str, target: str, table: str, count: int, writers: int = 2) -> None:
    """Start ``writers`` processes, let each open its sink, then release them together to append ``count`` records."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, kind, target, table, f"w{k}", str(count)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(writers)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stderr is not None
            line = proc.stdout.readline()
            assert line.strip() == "ready", proc.stderr.read()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        for proc in procs:
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
