"""Read timeouts on uvicorn's HTTP protocols (h11 and httptools, plain and TLS): a client that
dribbles its request headers or body is cut off (408, then the close) once the configured
timeout passes, while normal clients are served all along. Real sockets, uvicorn in this
process; the dribbling is paced by normal requests, never by sleeps."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx2
import orjson
import pytest
import uvicorn

from mcplane.config import HTTPSection
from mcplane.tls import client_context, server_context
from mcplane.transports.read_timeouts import timed_http_protocol
from mcplane.transports.tls_scope import tls_protocols
from tests.serving import ReadyServer
from tests.test_tls import CA
from tests.transports.wire import connect

TIMEOUT = 1.0
"""The configured header and body timeouts (short: each test waits for them to pass)."""
WAIT = 60.0
"""A generous bound for waiting on the server (never for asserting speed)."""
MAX_DRIBBLES = 8000
"""Dribbling stops here (below every header size limit); from then on the client just waits."""


@dataclass
class App:
    disconnected: list[str] = field(default_factory=list[str])
    gone: anyio.Event = field(default_factory=anyio.Event)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            while (message := await receive())["type"] == "websocket.receive":
                await send({"type": "websocket.send", "text": message["text"]})
            return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.disconnected.append(scope["path"])
                self.gone.set()
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"got %d" % len(body)})


@dataclass
class Served:
    port: int
    app: App
    client_tls: ssl.SSLContext | None

    @property
    def base(self) -> str:
        return f"{'https' if self.client_tls else 'http'}://localhost:{self.port}"


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA("read timeouts test CA")


@asynccontextmanager
async def serving(http: str, tls: bool, ca: CA, tmp_path: Path) -> AsyncGenerator[Served]:
    protocol: Any = timed_http_protocol(http, header_timeout=TIMEOUT, body_timeout=TIMEOUT)
    ws: Any = "auto"
    context = server_context(*ca.server().write(tmp_path, "server")) if tls else None
    client_tls = client_context(ca=ca.pem) if tls else None
    if tls:
        protocol, ws = tls_protocols(protocol, ws)

    def factory(_config: uvicorn.Config, _default: Any) -> ssl.SSLContext:
        assert context is not None
        return context

    app = App()
    config = uvicorn.Config(
        app,
        lifespan="off",
        log_level="warning",
        http=protocol,
        ws=ws,
        timeout_keep_alive=600,  # only the read timeouts under test cut connections here
        ssl_context_factory=factory if tls else None,
    )
    server = ReadyServer(config)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            try:
                with anyio.fail_after(WAIT):
                    await server.ready.wait()
                yield Served(sock.getsockname()[1], app, client_tls)
            finally:
                server.should_exit = True


class Slow:
    """A raw connection whose every byte from the server is collected until the server closes it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.received = b""
        self.closed = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def open(cls, served: Served) -> Slow:
        ssl_context: Any = served.client_tls
        host = "localhost" if ssl_context else "127.0.0.1"
        reader, writer = await asyncio.open_connection(host, served.port, ssl=ssl_context)
        return cls(reader, writer)

    async def _read(self) -> None:
        try:
            while chunk := await self.reader.read(65536):
                self.received += chunk
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            self.closed.set()

    async def send(self, data: bytes) -> None:
        if self.closed.is_set():
            return
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass

    async def close(self) -> None:
        self.writer.close()
        self._task.cancel()


async def dribble_until_closed(slow: Slow, data: bytes, served: Served) -> int:
    """Send ``data`` a byte at a time, one normal request after every byte, until the server
    closes the slow connection; returns how many normal requests were answered meanwhile."""
    served_calls = 0
    async with httpx2.AsyncClient(verify=served.client_tls or True, timeout=WAIT) as client:
        with anyio.fail_after(WAIT):
            for n in range(min(len(data), MAX_DRIBBLES)):
                if slow.closed.is_set():
                    break
                await slow.send(data[n : n + 1])
                response = await client.post(f"{served.base}/normal", content=b"hello")
                assert response.status_code == 200
                assert response.text == "got 5"
                served_calls += 1
            await slow.closed.wait()
    return served_calls


def assert_timed_out(received: bytes) -> None:
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), received[:300]
    assert b"content-type: application/json" in head.lower()
    error = orjson.loads(body)["error"]
    assert error["data"]["code"] == "timeout"
    assert error["code"] == -32600


PROTOCOLS = pytest.mark.parametrize(
    ("http", "tls"),
    [("h11", False), ("httptools", False), ("h11", True), ("httptools", True)],
    ids=["h11", "httptools", "h11-tls", "httptools-tls"],
)


@PROTOCOLS
async def test_a_client_dribbling_its_headers_is_cut_off(ca: CA, tmp_path: Path, http: str, tls: bool) -> None:
    async with serving(http, tls, ca, tmp_path) as served:
        slow = await Slow.open(served)
        try:
            head = b"POST /slow HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\nX-Padding: "
            served_calls = await dribble_until_closed(slow, head + b"a" * MAX_DRIBBLES, served)
        finally:
            await slow.close()
    assert_timed_out(slow.received)
    assert served_calls > 0
    assert served.app.disconnected == []  # the request never reached the app


@PROTOCOLS
async def test_a_client_dribbling_its_body_is_cut_off(ca: CA, tmp_path: Path, http: str, tls: bool) -> None:
    async with serving(http, tls, ca, tmp_path) as served:
        slow = await Slow.open(served)
        try:
            await slow.send(b"POST /slow HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n\r\n")
            served_calls = await dribble_until_closed(slow, b"x" * 100000, served)
        finally:
            await slow.close()
        with anyio.fail_after(WAIT):
            await served.app.gone.wait()  # the app learns the client is gone
    assert_timed_out(slow.received)
    assert served_calls > 0
    assert served.app.disconnected == ["/slow"]


@pytest.mark.parametrize("http", ["h11", "httptools"])
async def test_a_connection_that_sends_nothing_is_closed_without_an_answer(ca: CA, tmp_path: Path, http: str) -> None:
    async with serving(http, False, ca, tmp_path) as served:
        slow = await Slow.open(served)
        try:
            with anyio.fail_after(WAIT):
                await slow.closed.wait()
        finally:
            await slow.close()
    assert slow.received == b""  # nothing was asked: closed like an idle keep-alive connection


@pytest.mark.parametrize("http", ["h11", "httptools"])
async def test_a_request_begun_on_a_fresh_connection_gets_the_408(ca: CA, tmp_path: Path, http: str) -> None:
    """Once a byte of a request arrived, the connection is no longer idle: the cut-off is answered."""
    async with serving(http, False, ca, tmp_path) as served:
        slow = await Slow.open(served)
        try:
            await slow.send(b"P")
            served_calls = await dribble_until_closed(slow, b"OST /slow HTTP/1.1\r\nX: " + b"a" * MAX_DRIBBLES, served)
        finally:
            await slow.close()
    assert_timed_out(slow.received)
    assert served_calls > 0


@pytest.mark.parametrize("http", ["h11", "httptools"])
async def test_requests_on_a_kept_alive_connection_are_not_cut(ca: CA, tmp_path: Path, http: str) -> None:
    """The header timer starts with each request's first byte: a connection serving many quick
    requests for longer than the timeout lives on, and a body sent promptly is never timed."""
    async with serving(http, False, ca, tmp_path) as served:
        slow = await Slow.open(served)
        try:
            request = b"POST /kept HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\nabc"
            started, answers = time.monotonic(), 0
            with anyio.fail_after(WAIT):
                while time.monotonic() < started + 3 * TIMEOUT:
                    await slow.send(request)
                    answers += 1
                    while slow.received.count(b"got 3") < answers:
                        assert not slow.closed.is_set(), slow.received[-300:]
                        await anyio.sleep(0.001)
        finally:
            await slow.close()
    assert b"408" not in slow.received


@pytest.mark.parametrize("http", ["h11", "httptools"])
async def test_a_websocket_is_not_cut_by_the_header_timer(ca: CA, tmp_path: Path, http: str) -> None:
    from websockets.asyncio.client import connect

    async with serving(http, False, ca, tmp_path) as served, connect(f"ws://127.0.0.1:{served.port}/ws") as websocket:
        started = time.monotonic()
        with anyio.fail_after(WAIT):
            while time.monotonic() < started + 3 * TIMEOUT:
                await websocket.send("ping")
                assert await websocket.recv() == "ping"


def test_the_timeouts_are_configured_in_the_http_section() -> None:
    section = HTTPSection()
    assert (section.header_timeout, section.body_timeout) == (10.0, 30.0)
    section = HTTPSection.model_validate({"header_timeout": "2s", "body_timeout": "1m"})
    assert (section.header_timeout, section.body_timeout) == (2.0, 60.0)
    with pytest.raises(ValueError, match="positive"):
        HTTPSection.model_validate({"header_timeout": 0})
    with pytest.raises(ValueError, match="positive"):
        timed_http_protocol("h11", header_timeout=0)


@pytest.mark.parametrize("http", ["h11", "httptools"])
async def test_the_header_timer_runs_only_for_headers_that_are_not_all_here(http: str) -> None:
    """A request whose headers come in one piece arms no header timer (it would be cancelled at
    once); one whose headers are split arms it with its first bytes, and the body timer follows."""
    armed: list[str] = []
    timed = timed_http_protocol(http, header_timeout=WAIT, body_timeout=WAIT)

    class Spy(timed):  # type: ignore[misc,valid-type]
        def _arm(self, seconds: float, phase: str) -> None:
            armed.append(phase)
            super()._arm(seconds, phase)

    app = App()
    protocol, transport = connect(Spy, app)
    assert armed == ["idle"]

    async def answered(count: int) -> None:
        with anyio.fail_after(WAIT):
            while transport.written.count(b"got ") < count:
                transport.grew = anyio.Event()
                await transport.grew.wait()

    request = b"POST /x HTTP/1.1\r\nhost: localhost\r\ncontent-length: 3\r\n\r\nabc"
    protocol.data_received(request)  # the first request: the idle timer covers its headers
    await answered(1)
    protocol.data_received(request)  # a kept-alive connection's next request, whole
    await answered(2)
    assert armed == ["idle"]
    assert protocol._timer is None
    protocol.data_received(request[:20])  # headers in two pieces, then the body in two
    assert armed == ["idle", "headers"]
    protocol.data_received(request[20:-2])
    assert armed == ["idle", "headers", "body"]
    protocol.data_received(request[-2:])
    await answered(3)
    assert armed == ["idle", "headers", "body"]
    assert protocol._timer is None
    assert not transport.closed
    protocol.connection_lost(None)


def _reference_over_header_limits(counter: Any, data: bytes) -> bool:
    """The header count as it was first written (both blank lines searched in the whole chunk)."""
    tail = counter._header_tail + data
    ends = [at + len(blank) for blank in (b"\r\n\r\n", b"\n\n") if (at := tail.find(blank)) >= 0]
    end = min(ends) - len(counter._header_tail) if ends else len(data)
    counter._header_bytes += end
    counter._header_lines += data.count(b"\n", 0, end)
    over = counter._header_bytes > counter.max_header_bytes or counter._header_lines > counter.max_headers + 1
    if ends:
        counter._header_bytes = counter._header_lines = 0
        counter._header_tail = b""
    else:
        counter._header_tail = tail[-3:]
    return over


def test_the_header_count_agrees_with_a_search_of_the_whole_chunk() -> None:
    """Every request split every way (CRLF, bare LF, mixed; bodies with blank lines of either kind)
    counts the same bytes and lines, and reaches the same verdict, as searching the whole chunk."""
    from mcplane.transports.read_timeouts import _ReadTimeouts

    heads = [
        b"POST /mcp HTTP/1.1\r\nhost: a\r\ncontent-length: 9\r\n\r\n",
        b"POST /mcp HTTP/1.1\nhost: a\ncontent-length: 9\n\n",
        b"POST /mcp HTTP/1.1\r\nhost: a\n\r\n",
        b"POST /mcp HTTP/1.1\r\nhost: a\r\n\n",
        b"GET / HTTP/1.1\r\n" + b"x-many: 1\r\n" * 120 + b"\r\n",
    ]
    bodies = [b"", b"a\n\nb\r\n\r\nc", b"\n\n\n\n", b"\r\n\r\n", b"plain body"]
    for head in heads:
        for body in bodies:
            request = head + body + head  # a pipelined second request starts in the same bytes
            for cut in range(len(request) + 1):
                chunks = [request[:cut], request[cut:]]
                ours, theirs = _ReadTimeouts(), _ReadTimeouts()
                for counter in (ours, theirs):
                    counter.max_headers = 100
                    counter.max_header_bytes = 1000
                for chunk in chunks:
                    verdict = ours._over_header_limits(chunk)
                    assert verdict == _reference_over_header_limits(theirs, chunk), (request, cut)
                    state = (ours._header_bytes, ours._header_lines, ours._header_tail)
                    assert state == (theirs._header_bytes, theirs._header_lines, theirs._header_tail), (request, cut)
