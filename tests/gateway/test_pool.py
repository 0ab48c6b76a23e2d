"""The raw keep-alive pool of the lean lane (:mod:`mcplane.gateway.pool`), against real sockets.

A scripted HTTP/1.1 server on asyncio streams counts the connections it accepts and answers each
request as a test tells it to: by content length, chunked, with ``Connection: close``, to the end
of the connection, only in part, or not at all.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest

from mcplane.client._errors import is_transport_error  # pyright: ignore[reportPrivateUsage]
from mcplane.errors import UpstreamError
from mcplane.gateway import Gateway, pool
from mcplane.gateway.pool import Pool
from mcplane.tls import client_context
from mcplane.transports.http import HTTPApp, HTTPOptions
from tests.gateway.test_lean import fake_upstream
from tests.test_fastpath import body_of, modern_call, modern_headers
from tests.test_tls import CA

WAIT = 20.0


OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"

Script = Callable[["Served", asyncio.StreamWriter, bytes], Awaitable[bool]]
"""Answers one request (its body given) on a connection; ``False`` ends the connection."""


@dataclass
class Served:
    port: int = 0
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    got_request: asyncio.Event = field(default_factory=asyncio.Event)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    reader: asyncio.StreamReader | None = None
    """The reader of the connection the latest request came on."""


async def _serve_one(
    served: Served, script: Script, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    served.connections += 1
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = await reader.readexactly(length)
            served.reader = reader
            served.requests.append(head + body)
            served.got_request.set()
            if not await script(served, writer, body):
                break
            await writer.drain()
    finally:
        writer.close()
        served.closed.set()


@asynccontextmanager
async def server(script: Script, tls: ssl.SSLContext | None = None) -> AsyncGenerator[Served]:
    served = Served()
    writers: list[asyncio.StreamWriter] = []
    handlers: list[asyncio.Task[None]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.append(task)
        writers.append(writer)
        await _serve_one(served, script, reader, writer)

    listener = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=tls)
    served.port = listener.sockets[0].getsockname()[1]
    try:
        yield served
    finally:
        listener.close()
        served.closed.set()  # a script waiting on it gives up
        for writer in writers:
            writer.transport.abort()  # a handler reading gets the end of its connection
        with anyio.fail_after(WAIT):
            await asyncio.gather(*handlers, return_exceptions=True)


async def ok(served: Served, writer: asyncio.StreamWriter, body: bytes) -> bool:
    writer.write(OK)
    return True


async def call(p: Pool, body: bytes = b'{"n": 1}') -> tuple[int, bytes]:
    conn = await p.request(p.head([("content-type", "application/json")], len(body)), body)
    try:
        content = await conn.read()
    except BaseException:
        p.release(conn, discard=True)
        raise
    p.release(conn)
    return conn.status, content


async def until(condition: Callable[[], bool]) -> None:
    with anyio.fail_after(WAIT):
        while not condition():  # noqa: ASYNC110 - a condition of the loop's own callbacks, polled under a bound
            await anyio.sleep(0.01)


# ----------------------------------------------------------------- reuse
async def case_calls_in_sequence_share_one_connection(tmp_path: Path) -> None:
    async with server(ok) as served:
        p = Pool(f"http://127.0.0.1:{served.port}/mcp", None)
        for _ in range(5):
            assert await call(p) == (200, b"{}")
        p.close()
    assert served.connections == 1
    assert p.opened == 1
    assert served.requests[0].startswith(b"POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:")
    assert served.requests[0].endswith(b'content-length: 8\r\n\r\n{"n": 1}')


async def case_concurrent_calls_open_connections_up_to_the_bound_and_reuse_them(tmp_path: Path) -> None:
    gate = asyncio.Event()

    async def held(served: Served, writer: asyncio.StreamWriter, body: bytes) -> bool:
        if len(served.requests) >= 2:  # both connections busy: the third call waits for one
            gate.set()
        await gate.wait()
        writer.write(OK)
        return True

    async with server(held) as served:
        p = Pool(f"http://127.0.0.1:{served.port}/mcp", None, max_connections=2)
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(call, p)
            await until(lambda: len(served.requests) >= 2)
            assert served.connections == 2  # the third waits for one of them
        assert served.connections == 2
        assert len(served.requests) == 3
        assert await call(p) == (200, b"{}")
        assert served.connections == 2
        p.close()


# ----------------------------------------------------------------- the upstream closes
async def case_an_idle_connection_the_upstream_closed_is_replaced_for_the_next_call(tmp_path: Path) -> None:
    async def once(served: Served, writer: asyncio.StreamWriter, body: bytes) -> bool:
        writer.write(OK)
        return False  # answers (keep-alive, as far as the headers say) and then closes

    async with server(once) as served:
        p = Pool(f"http://127.0.0.1:{served.port}/mcp", None)
        assert await call(p) == (200, b"{}")
        await until(lambda: all(conn.closed for conn in p.idle))  # the loop saw the close
        assert await call(p) == (200, b"{}")  # never sent on the dead one: no error
        p.close()
    assert served.connections == 2


async def case_a_request_sent_on_a_connection_that_then_dies_is_a_transport_failure(tmp_path: Path) -> None:
    async def vanish(served: Served, writer: asyncio.StreamWriter, body: bytes) -> bool:
        return False

    async with server(vanish) as served:
        p = Pool(f"http://127.0.0.1:{served.port}/mcp", None)
        with pytest.raises(httpx2.RemoteProtocolError) as caught:
            await call(p)
        assert is_transport_error(caught.value)
        assert p.open == 0
        assert not p.idle
    assert served.connections == 1


async def case_a_body_cut_short_is_a_transport_failure_and_the_connection_is_dropped(tmp_path: Path) -> None:
    async def partial(served: Served, writer: asyncio.StreamWriter, body: bytes) -> bool:
        writer.write(b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"a"')
        await writer.drain()
        return False

    async with server(partial) as served:
        p = Pool(f"http://127.0.0.1:{served.port}/mcp", None)
        with pytest.raises(httpx2.RemoteProtocolError) as caught:
            await call(p)
        assert is_transport_error(caught.value)
        assert p.open == 0
        assert not p.idle


async def case_connection_close_answers_are_not_reused(tmp_path: Path) -> None:
    async def closing(served: Served, writer: asyncio.StreamWriter, body: bytes) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\n{}")
        return False

    async with server(closing) as served:
        p = Pool(f"http://127.0.0.1:{served.port}/mcp", None)
        for _ in range(3):
            assert await call(p) == (200, b"{}")
        assert not p.idle
        p.close()
    assert served.connections == 3


async def case_a_body_that_runs_to_the_end_of_the_connection(tmp_path: Path) -> None:
    async def to_eof(served: Served, writer: asyncio.StreamWriter, body: bytes) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-type: application/json\r\n\r\n")
        await writer.drain()
        writer.write(b'{"whole": true}')
        return False

    async with server(to_eof) as served:
        p = Pool(f"http://127.0.0.1:{served.port}/mcp", None)
        assert await call(p) == (200, b'{"whole": true}')
        assert p.open == 0


# ----------------------------------------------------------------- framing
async def case_chunked_answers_are_read_whole_and_the_connection_reused(tmp_path: Path) -> None:
    async def chunked(served: Served, writer: asyncio.StreamWriter, body: bytes) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-type: application/json\r\n\r\n")
        for piece in (b'{"a":', b' "bc', b'd"}'):
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        return True

    async with server(chunked) as served:
        p = Pool(f"http://127.0.0.1:{served.port}/mcp", None)
        assert await call(p) == (200, b'{"a": "bcd"}')
        assert await call(p) == (200, b'{"a": "bcd"}')
        p.close()
    assert served.connections == 1


# ----------------------------------------------------------------- TLS
async def case_a_tls_upstream_with_the_configured_server_name(tmp_path: Path) -> None:
    ca = CA("pool CA")
    cert, key = ca.server().write(tmp_path, "server")
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca.pem)
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(cert, key)
    async with server(ok, tls=server_side) as served:
        # The URL names an address; the certificate names localhost: the context's server name decides.
        tls = client_context(ca=str(ca_file), server_name="localhost")
        p = Pool(f"https://127.0.0.1:{served.port}/mcp", tls)
        assert await call(p) == (200, b"{}")
        assert await call(p) == (200, b"{}")
        p.close()
        wrong = Pool(f"https://127.0.0.1:{served.port}/mcp", client_context(ca=str(ca_file)))
        with pytest.raises(httpx2.ConnectError) as caught:
            await call(wrong)
        assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)
    assert served.connections == 1  # the two calls; the refused handshake never reached the server


# ----------------------------------------------------------------- cancellation
async def case_a_cancelled_exchange_closes_its_connection(tmp_path: Path) -> None:
    async def silent(served: Served, writer: asyncio.StreamWriter, body: bytes) -> bool:
        assert served.reader is not None
        assert await served.reader.read() == b""  # never answers; the client's close ends the wait
        return False

    async with server(silent) as served:
        p = Pool(f"http://127.0.0.1:{served.port}/mcp", None)
        async with anyio.create_task_group() as tg:
            tg.start_soon(call, p)
            with anyio.fail_after(WAIT):
                await served.got_request.wait()
            tg.cancel_scope.cancel()
        assert p.open == 0
        assert not p.idle
        with anyio.fail_after(WAIT):
            await served.closed.wait()  # the upstream saw the connection go


async def case_an_answer_over_the_cap_that_arrived_whole_is_refused(tmp_path: Path) -> None:
    big = b"x" * 64

    async def answer(served: Served, writer: asyncio.StreamWriter, body: bytes) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(big), big))
        return True

    async with server(answer) as served:
        p = Pool(f"http://127.0.0.1:{served.port}/mcp", None)
        body = b"{}"
        conn = await p.request(p.head([], len(body)), body)
        await until(lambda: conn.done)  # the whole answer is in before it is read
        conn.max_answer_bytes = len(big)
        assert await conn.read() == big  # at the cap: read whole
        p.release(conn)
        assert len(p.idle) == 1
        conn = await p.request(p.head([], len(body)), body)
        await until(lambda: conn.done)
        conn.max_answer_bytes = len(big) - 1
        with pytest.raises(UpstreamError) as caught:
            await conn.read()
        assert caught.value.code == "upstream_error"
        p.release(conn, discard=True)
        assert p.open == 0
        p.close()
    assert served.connections == 1


POOL_CASES = [
    case_calls_in_sequence_share_one_connection,
    case_concurrent_calls_open_connections_up_to_the_bound_and_reuse_them,
    case_an_idle_connection_the_upstream_closed_is_replaced_for_the_next_call,
    case_a_request_sent_on_a_connection_that_then_dies_is_a_transport_failure,
    case_a_body_cut_short_is_a_transport_failure_and_the_connection_is_dropped,
    case_connection_close_answers_are_not_reused,
    case_a_body_that_runs_to_the_end_of_the_connection,
    case_chunked_answers_are_read_whole_and_the_connection_reused,
    case_a_tls_upstream_with_the_configured_server_name,
    case_a_cancelled_exchange_closes_its_connection,
    case_an_answer_over_the_cap_that_arrived_whole_is_refused,
]


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize("case", POOL_CASES, ids=lambda case: case.__name__.removeprefix("case_"))
def test_the_pool(case: Callable[[Path], Coroutine[Any, Any, None]], loop: str, tmp_path: Path) -> None:
    """Each case on asyncio's own loop and on uvloop (the loop mcplane serves on when installed)."""
    factory = pytest.importorskip("uvloop").new_event_loop if loop == "uvloop" else None
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(case(tmp_path))


# ----------------------------------------------------------------- through the gateway
async def test_gateway_calls_to_an_upstream_share_one_connection() -> None:
    async with fake_upstream() as (url, fake):
        upstream = {"endpoints": [{"url": url}], "mode": "legacy", "retries": {"attempts": 1}}
        plane = Gateway.from_config({"server": {"default_timeout": "20s"}, "upstreams": {"fake": upstream}})
        app = HTTPApp(plane, HTTPOptions())
        async with app.running():
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
                for n in range(6):
                    name = "fake__ok"
                    response = await http.post("/mcp", json=modern_call(name, {"n": n}), headers=modern_headers(name))
                    assert body_of(response)["result"]["content"][0]["text"] == "fine ok"
            (endpoint,) = Gateway.provider_of(plane).upstreams["fake"].endpoints
            lane = endpoint.lean
            assert lane is not None
            assert lane.pool is not None
            assert lane.served == 6
            assert lane.pool.opened == 1
    assert len(fake.calls) == 6
    assert len(set(fake.clients)) == 1  # the upstream saw one connection


def test_without_httptools_the_lane_keeps_httpx(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pool, "available", False)
    assert pool.raw_pool_for(httpx2.AsyncClient(), "http://127.0.0.1:1/mcp", None) is None


async def test_a_proxy_from_the_environment_keeps_httpx(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    async with httpx2.AsyncClient() as proxied:
        assert pool.raw_pool_for(proxied, "http://upstream.example:8000/mcp", None) is None
    async with httpx2.AsyncClient(trust_env=False) as direct:
        assert pool.raw_pool_for(direct, "http://upstream.example:8000/mcp", None) is not None


def test_the_lane_request_head_is_the_merged_head_each_time() -> None:
    """The lean lane keeps request heads by the session and the stamp's headers: the same bytes as
    building them afresh, a value only ``httpx`` should judge refused every time, a caller's
    identity never kept."""
    from mcplane.gateway.identity import call_headers
    from mcplane.gateway.lean import LeanLane
    from mcplane.sdk_adapter.transport import BASE_HEADERS

    lane = LeanLane("http://127.0.0.1:9/mcp")
    lane._client_headers = {"user-agent": ("User-Agent", "ua/1"), "accept": ("Accept", "*/*")}  # pyright: ignore[reportPrivateUsage]
    lane.session_id = "s1"
    p = Pool("http://127.0.0.1:9/mcp", None)
    stamped = {"mcp-protocol-version": "2025-11-25"}
    expected = p.head(
        [
            ("User-Agent", "ua/1"),
            *BASE_HEADERS.items(),
            ("mcp-session-id", "s1"),
            ("mcp-protocol-version", "2025-11-25"),
        ],
        12,
    )
    for _ in range(2):
        assert lane._kept_head(p, False, dict(stamped), 12) == expected  # pyright: ignore[reportPrivateUsage]
    assert lane._kept_head(p, False, dict(stamped), 7) == expected.replace(b"length: 12", b"length: 7")  # pyright: ignore[reportPrivateUsage]
    modern = lane._kept_head(p, True, dict(stamped), 12)  # pyright: ignore[reportPrivateUsage]
    assert modern == expected.replace(b"mcp-session-id: s1\r\n", b"")  # a 2026-07-28 call carries no session
    lane.session_id = "s2"  # a new session: its own head
    assert lane._kept_head(p, False, dict(stamped), 12) == expected.replace(b"s1", b"s2")  # pyright: ignore[reportPrivateUsage]
    for _ in range(2):
        assert lane._kept_head(p, True, {"x-bad": "a\r\nb"}, 1) is None  # pyright: ignore[reportPrivateUsage]
        assert lane._kept_head(p, True, {"x-wide": "é€"}, 1) is None  # pyright: ignore[reportPrivateUsage]
    kept = len(lane._heads)  # pyright: ignore[reportPrivateUsage]
    token = call_headers.set({"authorization": "Bearer caller"})
    try:
        head = lane._prefix_with(p, lane._headers(True, dict(stamped)), 1)  # pyright: ignore[reportPrivateUsage]
    finally:
        call_headers.reset(token)
    assert head is not None
    assert b"authorization: Bearer caller\r\n" in head
    assert len(lane._heads) == kept  # pyright: ignore[reportPrivateUsage]
