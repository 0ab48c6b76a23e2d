"""Calls with hostile names, principals and arguments, through the audit slot into both real sinks: each gets its
records, the chain verifies, and PostgreSQL can still read every row as ``jsonb``."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import psycopg
from mcp_types import CallToolResult, TextContent
from psycopg import sql

from mcplane import Context, Principal
from mcplane.audit import AuditSink, verify_lines, verify_postgres
from mcplane.audit.postgres import PostgresSink
from mcplane.middleware.audit import AuditMiddleware
from mcplane.pipeline import Call, CallKind

MALLORY = Principal(subject="mal\ud800lory\x00", tenant="t\udfff")


def _deep(levels: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(levels - 1):
        value = [value]
    return value


CALLS: list[tuple[CallKind, str, dict[str, Any]]] = [
    ("tool", "\ud800tool", {"value": "\ud800"}),
    ("tool", "nul\x00name", {"value": int("9" * 1001), "\udc00": 2**64}),
    ("tool", "y" * 5000, {"value": _deep(300)}),
    ("resource", "files://\ud800/..", {}),
    ("prompt", "greet", {"who": "\udfff"}),
]


async def _run_hostile_calls(sink: AuditSink) -> list[dict[str, Any]]:
    audit = AuditMiddleware(sink)

    async def provider(call: Call) -> CallToolResult:
        return CallToolResult(content=[TextContent(type="text", text="\ud800 result")], structured_content={"n": 2**70})

    for kind, name, arguments in CALLS:
        await audit(Call(kind, name, arguments, Context(principal=MALLORY, correlation_id="cid")), provider)
    lines = await sink.read_lines()
    report = verify_lines(lines)
    assert report.ok, report.render()
    return [orjson.loads(line) for line in lines]


async def test_hostile_calls_are_recorded_and_the_chain_verifies(sink: AuditSink) -> None:
    records = await _run_hostile_calls(sink)
    assert [r["status"] for r in records] == ["pending", "ok"] * len(CALLS)
    names = [r["name"] for r in records[::2]]
    digest = hashlib.sha256(("y" * 5000).encode()).hexdigest()
    assert names == [
        "\\ud800tool",
        "nul\\u0000name",
        f"{'y' * 1024}…[5000 chars, sha256:{digest}]",
        "files://\\ud800/..",
        "greet",
    ]
    assert {(r["subject"], r["tenant"]) for r in records} == {("mal\\ud800lory\\u0000", "t\\udfff")}
    assert len({r["args_sha256"] for r in records}) == len(CALLS)
    assert all(r["result_sha256"] for r in records[1::2])


async def test_postgres_reads_hostile_records_as_jsonb_and_verifies_them(postgres_dsn: str, pg_table: str) -> None:
    sink = PostgresSink(postgres_dsn, table=pg_table)
    try:
        await _run_hostile_calls(sink)
    finally:
        await sink.aclose()
    with psycopg.connect(postgres_dsn) as conn:
        rows = conn.execute(
            sql.SQL("SELECT record::jsonb ->> 'name' FROM {} ORDER BY seq").format(sql.Identifier(*pg_table.split(".")))
        ).fetchall()
    assert [row[0] for row in rows][:4] == ["\\ud800tool", "\\ud800tool", "nul\\u0000name", "nul\\u0000name"]
    report = await verify_postgres(postgres_dsn, pg_table)
    assert (report.ok, report.count) == (True, 2 * len(CALLS))
