"""Slow clients (slow-loris) do not block others: while many connections dribble their request
headers, or their body, one byte at a time, a normal client's calls are answered after every byte
round; once the slow requests are complete they are answered too (within the read timeouts, set
long for that server). A client still dribbling when ``http.header_timeout``/``http.body_timeout``
run out is cut off with a 408 (set short for that server), while normal calls go on.

No sleeps: the dribbling is interleaved with the normal calls (one byte on every slow connection,
then one normal call, and again). See docs/reliability.md.
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


PATIENT = {"MCPLANE__HTTP__HEADER_TIMEOUT": "10m", "MCPLANE__HTTP__BODY_TIMEOUT": "10m"}
"""Read timeouts far beyond the dribbling's length: the slow requests complete."""
IMPATIENT = {"MCPLANE__HTTP__HEADER_TIMEOUT": "1s", "MCPLANE__HTTP__BODY_TIMEOUT": "1s"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server(APP, tmp_path=tmp_path_factory.mktemp("slowloris"), env=PATIENT)
    yield server
    assert server.proc.poll() is None
    server.stop()
    assert not server_errors(server.stderr()), server_errors(server.stderr())


@pytest.fixture(scope="module")
def impatient_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server(APP, tmp_path=tmp_path_factory.mktemp("slowloris-cut"), env=IMPATIENT)
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


class Dribbler:
    """A slow client's raw connection: sends a byte when told, notices when the server closed it."""

    def __init__(self, port: int, request: bytes) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self.request = request
        self.received = b""
        self.closed = False

    def poll(self) -> None:
        """Read what the server sent, without waiting; a close sets ``closed``."""
        self.sock.setblocking(False)
        try:
            while chunk := self.sock.recv(65536):
                self.received += chunk
            self.closed = True
        except BlockingIOError:
            pass
        except ConnectionError:
            self.closed = True
        finally:
            self.sock.settimeout(WAIT)

    def send(self, start: int, end: int) -> None:
        try:
            self.sock.sendall(self.request[start:end])
        except ConnectionError:
            self.closed = True


@pytest.mark.parametrize("part", ["headers", "body"])
def test_dribbling_clients_are_cut_off_after_the_read_timeout(impatient_server: ServerProcess, part: str) -> None:
    server = impatient_server
    padding = "x" * 6000  # a long header: the headers take thousands of rounds to dribble
    slow = []
    for i in range(SLOW_CLIENTS):
        request = raw_request(server.port, echo_body(f"slow{i}", i) + b" " * 100_000)  # JSON, then blanks
        slow.append(Dribbler(server.port, request.replace(b"\r\n", f"\r\nX-Padding: {padding}\r\n".encode(), 1)))
    try:
        position = 0 if part == "headers" else slow[0].request.index(b"\r\n\r\n") + 4
        for client in slow:
            client.send(0, position)
        with httpx.Client(timeout=httpx.Timeout(WAIT)) as client:
            while not all(dribbler.closed for dribbler in slow):
                assert position < len(slow[0].request) - 1, "a slow client got to the end of its request"
                for dribbler in slow:  # one byte on every slow connection still open, ...
                    dribbler.poll()
                    if not dribbler.closed:
                        dribbler.send(position, position + 1)
                normal_call(client, server)  # ... then a normal call, answered all along
                position += 1
        if part == "headers":
            assert position < slow[0].request.index(b"\r\n\r\n"), "cut off only after the headers were in"
        for dribbler in slow:
            assert dribbler.received.startswith(b"HTTP/1.1 408 "), dribbler.received[:300]
    finally:
        for dribbler in slow:
            dribbler.sock.close()
