"""Over real Streamable HTTP, a record carries the client's IP, user agent, session and trace id."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import orjson

from mcplane.audit import verify_file
from tests.conftest import REPO_ROOT, start_server

APP = Path(__file__).with_name("audited_app.py")
QUICKSTART = REPO_ROOT / "examples" / "quickstart" / "server.py"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
HEADERS = {
    "accept": "application/json, text/event-stream",
    "content-type": "application/json",
    "user-agent": "audit-test/1.0",
    "traceparent": f"00-{TRACE}-00f067aa0ba902b7-01",
}


def test_http_calls_are_audited_with_their_request_facts(tmp_path: Path) -> None:
    audit_file = tmp_path / "audit.jsonl"
    server = start_server(APP, tmp_path=tmp_path, env={"MCPLANE_TEST_AUDIT_FILE": str(audit_file)})
    try:
        with httpx.Client(base_url=server.base, timeout=10) as http:
            init = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
            response = http.post(
                "/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": init}, headers=HEADERS
            )
            session = response.headers["mcp-session-id"]
            headers = {**HEADERS, "mcp-session-id": session, "mcp-protocol-version": "2025-11-25"}
            http.post("/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
            call = {"name": "add", "arguments": {"a": 1, "b": 2}}
            response = http.post(
                "/mcp", json={"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": call}, headers=headers
            )
            assert '"structuredContent":{"result":3}' in response.text
    finally:
        server.stop()
    report = verify_file(audit_file)
    assert report.ok, report.render()
    pending, outcome = (orjson.loads(line) for line in audit_file.read_text().splitlines())
    assert (pending["status"], outcome["status"]) == ("pending", "ok")
    for record in (pending, outcome):
        assert record["client_ip"] == "127.0.0.1"
        assert record["user_agent"] == "audit-test/1.0"
        assert record["trace_id"] == TRACE
        assert record["session_id"] == session
        assert record["correlation_id"] != ""


def _call(http: httpx.Client, request_id: int, arguments: str) -> str:
    """A 2026-07-28 ``tools/call`` of ``add`` with ``arguments`` as JSON text (any depth, any digits)."""
    meta = '{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}'
    body = (
        f'{{"jsonrpc":"2.0","id":{request_id},"method":"tools/call",'
        f'"params":{{"name":"add","arguments":{arguments},"_meta":{meta}}}}}'
    )
    headers = {**HEADERS, "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": "add"}
    return http.post("/mcp", content=body.encode(), headers=headers).text


def test_one_record_per_call_over_http_hostile_arguments_included(tmp_path: Path) -> None:
    audit_file = tmp_path / "audit.jsonl"
    config = tmp_path / "mcplane.yaml"
    config.write_text(f"audit: {{path: {json.dumps(str(audit_file))}, fsync: interval, pending: false}}\n")
    server = start_server(QUICKSTART, tmp_path=tmp_path, extra_args=("--config", str(config)))
    sent = [
        '{"a":1,"b":2}',  # the hot path
        f'{{"a":{2**70},"b":1}}',  # an integer beyond 64 bits: the SDK's path
        '{"a":"\\ud800","b":[' + ",".join(["1"] * 50_000) + "]}",  # wrong types, a lone surrogate, a large array
        '{"a":' + "[" * 3000 + "1" + "]" * 3000 + ',"b":1}',  # deep nesting
    ]
    try:
        with httpx.Client(base_url=server.base, timeout=30) as http:
            answers = [_call(http, n, arguments) for n, arguments in enumerate(sent, 1)]
            assert http.get("/health").status_code == 200
    finally:
        server.stop()
    assert '"structuredContent":{"result":3}' in answers[0]
    assert str(2**70 + 1) in answers[1]
    assert '"code":-32700' in answers[3]  # nested past the parser's bound: refused before it is a call
    report = verify_file(audit_file)
    assert report.ok, report.render()
    records = [orjson.loads(line) for line in audit_file.read_text().splitlines()]
    assert [(r["status"], r["error_code"]) for r in records] == [  # one per call, none "pending"
        ("ok", None),
        ("ok", None),
        ("error", "invalid_arguments"),
    ]
    assert len({r["call_id"] for r in records}) == 3
    assert all(r["client_ip"] == "127.0.0.1" and r["user_agent"] == "audit-test/1.0" for r in records)
