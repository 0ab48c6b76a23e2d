"""Slow clients (slow-loris) do not block others: while many connections dribble their request
headers, or their body, one byte at a time, a normal client's calls are answered after every byte
round; once the slow requests are complete they are answered too.

No sleeps: the dribbling is interleaved with the normal calls (one byte on every slow connection,
then one normal call, and again). The server's own limits on slow clients: see docs/reliability.md
(uvicorn has no header or body read timeout; the reverse proxy in front must provide them).
"""

from __future__ import annotations

import itertools
import socket
from collections.abc import Iterator

import httpx
import orjson
import pytest

from tests.conftest import REPO_ROOT, ServerProcess, start_server
from tests.fuzz.payloads import ENVELOPE, server_errors

APP = REPO_ROOT / "deploy" / "testbed" / "app.py"
SLOW_CLIENTS = 24
WAIT = 30.0
HEADERS = {
    "Accept": "application/json, text/event-stream",
    "Content-Type": "application/json",
    "MCP-Protocol-Version": "2026-07-28",
    "Mcp-Method": "tools/call",
    "Mcp-Name": "echo",
}
counter = itertools.count(1)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server(APP, tmp_path=tmp_path_factory.mktemp("slowloris"))
    yield server
    assert server.proc.poll() is None
    server.stop()
    assert not server_errors(server.stderr()), server_errors(server.stderr())


def echo_body(text: str, request_id: int | str) -> bytes:
    params = {"name": "echo", "arguments": {"text": text}, "_meta": ENVELOPE}
    return orjson.dumps({"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params})


def raw_request(port: int, body: bytes) -> bytes:
    head = f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in HEADERS.items())
    return head.encode() + b"Content-Length: %d\r\n\r\n" % len(body) + body


def normal_call(client: httpx.Client, server: ServerProcess) -> None:
    n = next(counter)
    response = client.post(server.url, content=echo_body(f"n{n}", n), headers=HEADERS)
    assert response.status_code == 200
    assert orjson.loads(response.content)["result"]["structuredContent"] == {"result": f"n{n}"}


def read_answer(sock: socket.socket) -> bytes:
    sock.settimeout(WAIT)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk
        body += chunk
    assert head.startswith(b"HTTP/1.1 200"), head
    return body


@pytest.mark.parametrize("part", ["headers", "body"])
def test_dribbling_clients_do_not_block_others(server: ServerProcess, part: str) -> None:
    requests = [raw_request(server.port, echo_body(f"slow{i}", i)) for i in range(SLOW_CLIENTS)]
    sockets = [socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) for _ in requests]
    try:
        start = 0 if part == "headers" else requests[0].index(b"\r\n\r\n") + 4
        if start:
            for sock, request in zip(sockets, requests, strict=True):
                sock.sendall(request[:start])
        with httpx.Client(timeout=httpx.Timeout(WAIT)) as client:
            normal_call(client, server)
            for position in range(start, max(len(r) for r in requests) - 1):
                for sock, request in zip(sockets, requests, strict=True):
                    if position < len(request) - 1:
                        sock.sendall(request[position : position + 1])
                normal_call(client, server)  # answered while every slow request is incomplete
        for i, (sock, request) in enumerate(zip(sockets, requests, strict=True)):
            sock.sendall(request[-1:])
            answer = orjson.loads(read_answer(sock))
            assert answer["result"]["structuredContent"] == {"result": f"slow{i}"}
    finally:
        for sock in sockets:
            sock.close()
