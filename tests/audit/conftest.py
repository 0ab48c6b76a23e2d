"""Audit fixtures: a PostgreSQL schema per test, the two sinks, a manual clock, a flaky sink, an audited server."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pytest
from psycopg import sql

from mcplane.audit import AuditSink, JsonlSink, verify_file
from mcplane.audit.postgres import PostgresSink
from tests.conftest import ServerProcess, mcplane_command, start_server

POSTGRES_DSN = os.environ.get("MCPLANE_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")

SinkFactory = Callable[[], AuditSink]
HOSTILE_APP = Path(__file__).with_name("hostile_app.py")


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


async def main(kind: str, target: str, table: str, name: str, count: int, rotate_bytes: int) -> None:
    if kind == "jsonl":
        sink = JsonlSink(target, fsync="never", rotate_bytes=rotate_bytes or None)
    else:
        sink = PostgresSink(target, table=table)
    await sink.append([{"writer": name, "i": -1}])
    print("ready", flush=True)
    sys.stdin.readline()
    for i in range(count):
        await sink.append([{"writer": name, "i": i}])
    await sink.aclose()


anyio.run(main, sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6]))
"""


def run_writer_processes(
    kind: str, target: str, table: str, count: int, writers: int = 2, rotate_bytes: int = 0
) -> None:
    """Start ``writers`` processes, let each open its sink, then release them together to append ``count``
    records (a JSONL sink rotating at ``rotate_bytes``, if given)."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, kind, target, table, f"w{k}", str(count), str(rotate_bytes)],
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


MODERN = "2026-07-28"
"""The stateless protocol era: its HTTP transport parses JSON with the standard library, which
accepts what orjson and pydantic refuse (lone surrogate escapes, integers beyond 64 bits)."""


@dataclass
class AuditedServer:
    """``tests/audit/hostile_app.py`` under ``mcplane run``, auditing to a JSONL file."""

    server: ServerProcess
    audit_file: Path

    def records(self) -> list[dict[str, Any]]:
        if not self.audit_file.exists():
            return []
        lines = self.audit_file.read_bytes().decode("utf-8").removesuffix("\n")
        return [orjson.loads(line) for line in lines.split("\n")] if lines else []

    def post(self, method: str, params: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
        """One 2026-07-28 request; the JSON is written by the standard library, so a lone surrogate
        in ``params`` goes out as its escape (``"\\ud800"``) and a huge integer as its digits."""
        name = params.get("uri") if method == "resources/read" else params.get("name")
        body = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": method,
            "params": {
                **params,
                "_meta": {
                    "io.modelcontextprotocol/protocolVersion": MODERN,
                    "io.modelcontextprotocol/clientCapabilities": {},
                },
            },
        }
        sent = {
            "accept": "application/json, text/event-stream",
            "content-type": "application/json",
            "mcp-protocol-version": MODERN,
            "mcp-method": method,
            "mcp-name": str(name),
            **(headers or {}),
        }
        return httpx.post(self.server.url, content=json.dumps(body).encode(), headers=sent, timeout=30)

    def audited(self, send: Callable[[], Any]) -> tuple[Any, dict[str, Any], dict[str, Any]]:
        """What ``send()`` answered, and the one call's two records it left (pending, outcome)."""
        before = len(self.records())
        answer = send()
        added = self.records()[before:]
        assert len(added) == 2, f"expected one call's pending and outcome records, got {added}"
        pending, outcome = added
        assert pending["call_id"] == outcome["call_id"]
        assert (pending["status"], outcome["status"]) in {("pending", "ok"), ("pending", "error")}
        return answer, pending, outcome

    def verify(self) -> None:
        report = verify_file(self.audit_file)
        assert report.ok, report.render()
        assert report.count == len(self.records())

    def verify_cli(self) -> None:
        """``mcplane audit verify --file``, as an operator runs it."""
        done = subprocess.run(
            mcplane_command("audit", "verify", "--file", str(self.audit_file)),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.startswith(f"ok: {len(self.records())} records")


def start_audited_server(tmp_path: Path, **env: str) -> AuditedServer:
    """Serve ``hostile_app.py`` with ``audit:`` on (a file in ``tmp_path``) plus ``MCPLANE__`` overrides."""
    audit_file = tmp_path / "audit.jsonl"
    server = start_server(HOSTILE_APP, tmp_path=tmp_path, env={"MCPLANE__AUDIT__PATH": str(audit_file), **env})
    return AuditedServer(server, audit_file)
