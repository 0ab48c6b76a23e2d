"""Over real Streamable HTTP, a record carries the client's IP, user agent, session and trace id."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson

from mcplane.audit import verify_file
from tests.conftest import start_server

APP = Path(__file__).with_name("audited_app.py")
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
