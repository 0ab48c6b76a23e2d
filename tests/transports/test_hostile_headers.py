"""Hostile headers against a real server with authentication on: oversized and too many headers
answer 431 before authentication, duplicate Host/Origin are refused, and every refusal at the
HTTP layer is counted in ``mcplane_http_refusals_total`` and sampled in the log."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator

import httpx
import orjson
import psutil
import pytest
import yaml
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from mcplane.auth import hash_api_key
from mcplane.transports.refusals import Refusals
from tests.conftest import QUICKSTART, ServerProcess, start_server

API_KEY = "hostile-headers-test-key-0123456789"
ACCEPT = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
CALL = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "tools/call",
    "params": {
        "name": "add",
        "arguments": {"a": 1, "b": 2},
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
        },
    },
}
MODERN = {**ACCEPT, "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": "add"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("hostile-headers")
    config = tmp / "mcplane.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "auth": {"api_keys": [{"id": "k", "hash": hash_api_key(API_KEY), "subject": "ci"}]},
                "http": {"max_header_bytes": 16384, "max_headers": 40},
                "observability": {"log_format": "json"},
            }
        )
    )
    server = start_server(QUICKSTART, tmp_path=tmp, extra_args=("--config", str(config)))
    yield server
    server.stop()


def _raw(port: int, request: bytes, *, chunk: int = 65536) -> bytes:
    """Send ``request`` on a raw socket (as fast as the server takes it) and read the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        try:
            for start in range(0, len(request), chunk):
                sock.sendall(request[start : start + chunk])
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed while the rest was still on its way
        answer = b""
        while True:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            answer += data
    return answer


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def _body(answer: bytes) -> dict[str, object]:
    return orjson.loads(answer.split(b"\r\n\r\n", 1)[1])


def _authorized(server: ServerProcess) -> httpx.Response:
    return httpx.post(server.url, json=CALL, headers={**MODERN, "x-api-key": API_KEY}, timeout=10)


def test_a_huge_header_without_a_token_is_431_and_memory_stays_bounded(server: ServerProcess) -> None:
    before = psutil.Process(server.proc.pid).memory_info().rss
    request = b"POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\nx-junk: " + b"a" * (16 * 1024 * 1024) + b"\r\n\r\n"
    answer = _raw(server.port, request)
    assert _status(answer) == 431
    assert _body(answer) == {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": -32600, "message": "request headers too large", "data": {"code": "invalid_request"}},
    }
    grown = psutil.Process(server.proc.pid).memory_info().rss - before
    assert grown < 8 * 1024 * 1024, f"the server grew by {grown} bytes for a refused 16 MiB header"
    assert _authorized(server).json()["result"]["structuredContent"] == {"result": 3}


def test_too_many_headers_are_431(server: ServerProcess) -> None:
    lines = b"".join(b"x-h%d: v\r\n" % i for i in range(60))
    answer = _raw(server.port, b"GET /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\n" + lines + b"\r\n")
    assert _status(answer) == 431


def test_headers_under_the_limits_are_served(server: ServerProcess) -> None:
    headers = {**MODERN, "x-api-key": API_KEY, **{f"x-h{i}": "v" * 100 for i in range(20)}}
    response = httpx.post(server.url, json=CALL, headers=headers, timeout=10)
    assert response.json()["result"]["structuredContent"] == {"result": 3}


@pytest.mark.parametrize(
    "extra",
    [
        b"host: evil.example\r\nhost: 127.0.0.1\r\n",
        b"host: 127.0.0.1\r\nhost: evil.example\r\n",
        b"host: 127.0.0.1\r\norigin: https://evil.example\r\norigin: http://127.0.0.1\r\n",
    ],
)
def test_duplicate_host_or_origin_is_refused(server: ServerProcess, extra: bytes) -> None:
    body = orjson.dumps(CALL)
    request = (
        b"POST /mcp HTTP/1.1\r\n"
        + extra
        + b"x-api-key: "
        + API_KEY.encode()
        + b"\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\n"
        + b"mcp-protocol-version: 2026-07-28\r\nmcp-method: tools/call\r\nmcp-name: add\r\n"
        + b"connection: close\r\ncontent-length: %d\r\n\r\n" % len(body)
        + body
    )
    answer = _raw(server.port, request)
    assert _status(answer) == 400
    assert _body(answer)["error"]["data"] == {"code": "invalid_request"}  # type: ignore[index]


def test_a_duplicate_host_on_a_websocket_handshake_is_refused(server: ServerProcess) -> None:
    with pytest.raises(InvalidStatus) as refused:
        connect(
            server.ws_url,
            subprotocols=["mcp"],  # type: ignore[list-item]
            additional_headers=[("host", "evil.example"), ("x-api-key", API_KEY)],
            open_timeout=10,
        )
    assert refused.value.response.status_code == 403  # a refused handshake (see transports/http.py)


def test_refusals_are_counted_and_sampled_in_the_log(server: ServerProcess) -> None:
    assert httpx.post(server.url, json=CALL, headers=MODERN, timeout=10).status_code == 401
    assert httpx.post(server.url, json=CALL, headers={**MODERN, "host": "evil.example"}, timeout=10).status_code == 421
    assert _status(_raw(server.port, b"GET /mcp HTTP/1.1\r\nx: " + b"a" * 20000 + b"\r\n\r\n")) == 431
    metrics = httpx.get(f"{server.base}/metrics", timeout=10).text
    counted: dict[tuple[str, str], float] = {}
    for labels, value in re.findall(r"^mcplane_http_refusals_total\{([^}]*)\} (\S+)$", metrics, flags=re.M):
        parsed = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        counted[(parsed["status"], parsed["reason"])] = float(value)
    assert counted[("401", "missing_token")] >= 1
    assert counted[("421", "host_not_allowed")] >= 1
    assert counted[("431", "headers_too_large")] >= 1
    events = [orjson.loads(line) for line in server.stderr().splitlines() if '"http_refused"' in line]
    assert events, "no sampled http_refused line in the log"
    assert {"status", "reason", "peer", "left_out"} <= set(events[0])
    assert API_KEY not in server.stderr()


def test_the_log_keeps_one_line_per_interval_with_a_count(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    refusals = Refusals(interval=10.0, clock=lambda: now[0])
    for _ in range(5):
        refusals(401, "missing_token", "127.0.0.1")
    now[0] += 10.0
    refusals(421, "host_not_allowed", "127.0.0.1")
    lines = [record.getMessage() for record in caplog.records if record.name == "mcplane.http"]
    assert lines == [
        "refused a request from 127.0.0.1: 401 missing_token (0 more since the last such line)",
        "refused a request from 127.0.0.1: 421 host_not_allowed (4 more since the last such line)",
    ]
