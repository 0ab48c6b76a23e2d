"""The client address and user agent a record holds, over real HTTP and WebSocket: X-Forwarded-For is believed
only from ``http.trusted_proxies`` (none by default), right-most untrusted hop first, on every transport."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from websockets.asyncio.client import ClientConnection, connect

from mcplane.transports.websocket import SUBPROTOCOL
from tests.audit.conftest import MODERN, AuditedServer, start_audited_server

SPOOFED = "203.0.113.66"
CHAIN = "198.51.100.7, 203.0.113.66, 10.1.2.3"
"""Written by the client (198.51.100.7, a lie), then appended by its proxy 203.0.113.66... which is the
client as far as our proxies know: 10.1.2.3 is one of ours, and it appended what it saw."""
AGENT = "audit-client/2.0"
TIMEOUT = 10


@pytest.fixture(scope="module")
def untrusting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuditedServer]:
    served = start_audited_server(tmp_path_factory.mktemp("default"))
    yield served
    served.server.stop()
    served.verify_cli()


@pytest.fixture(scope="module")
def behind_proxies(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuditedServer]:
    served = start_audited_server(
        tmp_path_factory.mktemp("proxied"), MCPLANE__HTTP__TRUSTED_PROXIES="[127.0.0.1, 10.0.0.0/8]"
    )
    yield served
    served.server.stop()
    served.verify_cli()


def _http_call(served: AuditedServer, forwarded_for: str) -> tuple[dict[str, Any], dict[str, Any]]:
    headers = {"x-forwarded-for": forwarded_for, "user-agent": AGENT}
    response, pending, outcome = served.audited(
        lambda: served.post("tools/call", {"name": "add", "arguments": {"a": 1, "b": 2}}, headers)
    )
    assert response.status_code == 200, response.text
    return pending, outcome


def test_a_spoofed_forwarded_for_from_loopback_is_recorded_as_the_real_peer(untrusting: AuditedServer) -> None:
    pending, outcome = _http_call(untrusting, SPOOFED)
    for record in (pending, outcome):
        assert (record["client_ip"], record["user_agent"]) == ("127.0.0.1", AGENT)


def test_forwarded_for_from_a_trusted_proxy_names_the_right_most_untrusted_hop(behind_proxies: AuditedServer) -> None:
    pending, outcome = _http_call(behind_proxies, CHAIN)
    assert pending["client_ip"] == outcome["client_ip"] == SPOOFED
    pending, _ = _http_call(behind_proxies, "10.0.0.9, 10.1.2.3")
    assert pending["client_ip"] == "10.0.0.9"  # every hop one of ours: the left-most


# ------------------------------------------------------------------ WebSocket
def _meta(**extra: Any) -> dict[str, Any]:
    return {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
        **extra,
    }


CALLS: dict[str, dict[str, Any]] = {
    # A plain tools/call takes mcplane's hot path; a progress token sends it through the SDK instead.
    "hot path": {"method": "tools/call", "params": {"name": "add", "arguments": {"a": 1, "b": 2}, "_meta": _meta()}},
    "SDK path": {
        "method": "tools/call",
        "params": {"name": "add", "arguments": {"a": 1, "b": 2}, "_meta": _meta(progressToken="p1")},
    },
    "resource read": {"method": "resources/read", "params": {"uri": "config://app", "_meta": _meta()}},
}


async def _ws_calls(served: AuditedServer, forwarded_for: str) -> list[dict[str, Any]]:
    """Each of :data:`CALLS` on one connection; the records of each, in order."""
    records: list[dict[str, Any]] = []
    with anyio.fail_after(TIMEOUT * 3):
        async with connect(
            served.server.ws_url,
            subprotocols=[SUBPROTOCOL],  # pyright: ignore[reportArgumentType]
            additional_headers={"X-Forwarded-For": forwarded_for},
            user_agent_header=AGENT,
            open_timeout=TIMEOUT,
        ) as ws:
            for request_id, call in enumerate(CALLS.values(), 1):
                before = len(served.records())
                await ws.send(json.dumps({"jsonrpc": "2.0", "id": request_id, **call}))
                answer = await _answer(ws, request_id)
                assert "result" in answer, answer
                added = served.records()[before:]
                assert [record["status"] for record in added] == ["pending", "ok"], added
                records += added
    return records


async def _answer(ws: ClientConnection, request_id: int) -> dict[str, Any]:
    while True:
        message = json.loads(await ws.recv(decode=True))
        if message.get("id") == request_id:
            return message


async def test_websocket_records_carry_the_peer_and_user_agent(untrusting: AuditedServer) -> None:
    records = await _ws_calls(untrusting, SPOOFED)
    assert len(records) == 2 * len(CALLS)
    for record in records:
        assert (record["client_ip"], record["user_agent"]) == ("127.0.0.1", AGENT), record


async def test_websocket_forwarded_for_is_believed_from_a_trusted_proxy(behind_proxies: AuditedServer) -> None:
    records = await _ws_calls(behind_proxies, CHAIN)
    assert len(records) == 2 * len(CALLS)
    for record in records:
        assert (record["client_ip"], record["user_agent"]) == (SPOOFED, AGENT), record
