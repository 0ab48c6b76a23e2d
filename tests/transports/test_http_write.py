"""One write per fixed-length answer (``mcplane.transports.http_write``): uvicorn's httptools
protocol and the one-write protocol, driven with the same requests on a recording transport,
put the same bytes on the wire; the one-write protocol writes a ``Content-Length`` answer's head
and body in one ``write``, and everything else (chunked heads, ``HEAD`` answers, ``100
Continue``, an app failing half-way) as soon as uvicorn does."""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

import pytest
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from mcplane.transports.http_write import one_write_http_protocol
from mcplane.transports.read_timeouts import timed_http_protocol
from tests.transports.wire import App, Recording, connect

WAIT = 30.0


def post(body: bytes, *extra: bytes, method: bytes = b"POST") -> bytes:
    head = [b"%s /mcp HTTP/1.1" % method, b"host: localhost", b"content-length: %d" % len(body), *extra]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


async def drive(protocol_class: Any, app: App, *requests: bytes, answers: int) -> Recording:
    """Feed ``requests`` to a fresh connection of ``protocol_class`` until ``answers`` responses completed."""
    done = asyncio.Event()
    completed = 0

    async def counting(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal completed
        try:
            await app(scope, receive, send)
        finally:
            completed += 1
            if completed >= answers:
                done.set()

    protocol, transport = connect(protocol_class, counting)
    for request in requests:
        protocol.data_received(request)
    await asyncio.wait_for(done.wait(), WAIT)
    for _ in range(3):  # let uvicorn finish its bookkeeping after the app returned
        await asyncio.sleep(0)
    protocol.connection_lost(None)
    return transport


async def json_answer(scope: dict[str, Any], receive: Any, send: Any) -> None:
    message = await receive()
    payload = b'{"echo":' + (message.get("body") or b"null") + b"}"
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(payload))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


async def chunked_answer(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
    await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
    await send({"type": "http.response.body", "body": b"data: 2\n\n"})


async def in_pieces(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"6")]})
    await send({"type": "http.response.body", "body": b"abc", "more_body": True})
    await send({"type": "http.response.body", "body": b"def"})


async def fails_after_start(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
    raise RuntimeError("the app broke half-way")


async def too_long(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"too long"})


async def no_answer(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()


_ONE_WRITE = one_write_http_protocol("httptools")
assert isinstance(_ONE_WRITE, type)
ONE_WRITE: type[Any] = _ONE_WRITE

CASES: dict[str, tuple[App, tuple[bytes, ...], int]] = {
    "json": (json_answer, (post(b'{"a":1}'),), 1),
    "pipelined": (json_answer, (post(b"1") + post(b"2") + post(b"3"),), 3),
    "keep-alive": (json_answer, (post(b"1"), post(b"2")), 2),
    "connection close": (json_answer, (post(b"1", b"connection: close"),), 1),
    "HEAD": (json_answer, (post(b"", method=b"HEAD"),), 1),
    "chunked": (chunked_answer, (post(b"x"),), 1),
    "in pieces": (in_pieces, (post(b"x"),), 1),
    "fails after start": (fails_after_start, (post(b"x"),), 1),
    "body longer than declared": (too_long, (post(b"x"),), 1),
    "no answer (500)": (no_answer, (post(b"x"),), 1),
    "100 continue": (json_answer, (post(b"{}", b"expect: 100-continue"),), 1),
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_the_same_bytes_as_uvicorn(case: str) -> None:
    app, requests, answers = CASES[case]
    plain = await drive(HttpToolsProtocol, app, *requests, answers=answers)
    one_write = await drive(ONE_WRITE, app, *requests, answers=answers)
    assert b"".join(one_write.writes) == b"".join(plain.writes)
    assert one_write.closed == plain.closed


async def test_a_fixed_length_answer_is_one_write() -> None:
    plain = await drive(HttpToolsProtocol, json_answer, post(b'{"a":1}'), answers=1)
    assert len(plain.writes) == 2  # uvicorn's own: the head, then the body
    one_write = await drive(ONE_WRITE, json_answer, post(b'{"a":1}'), answers=1)
    assert one_write.writes == [b"".join(plain.writes)]


async def test_each_pipelined_answer_is_one_write() -> None:
    one_write = await drive(ONE_WRITE, json_answer, post(b"1") + post(b"2") + post(b"3"), answers=3)
    assert len(one_write.writes) == 3
    assert all(write.startswith(b"HTTP/1.1 200 OK\r\n") for write in one_write.writes)
    assert [write.rsplit(b"\r\n\r\n", 1)[1] for write in one_write.writes] == [
        b'{"echo":1}',
        b'{"echo":2}',
        b'{"echo":3}',
    ]


async def test_what_is_not_held_goes_out_as_uvicorn_writes_it() -> None:
    for app, request in ((chunked_answer, post(b"x")), (json_answer, post(b"", method=b"HEAD"))):
        plain = await drive(HttpToolsProtocol, app, request, answers=1)
        one_write = await drive(ONE_WRITE, app, request, answers=1)
        assert one_write.writes == plain.writes


async def test_a_head_is_not_held_past_the_next_send() -> None:
    """The first piece of a body in pieces takes the head with it; the rest follows as uvicorn writes it."""
    one_write = await drive(ONE_WRITE, in_pieces, post(b"x"), answers=1)
    assert len(one_write.writes) == 2
    assert one_write.writes[0].endswith(b"\r\n\r\nabc")
    assert one_write.writes[1] == b"def"


async def test_a_held_head_goes_out_before_the_close_when_the_app_breaks() -> None:
    one_write = await drive(ONE_WRITE, fails_after_start, post(b"x"), answers=1)
    assert one_write.closed
    assert len(one_write.writes) == 1
    assert one_write.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")


async def test_100_continue_is_written_at_once() -> None:
    seen: list[list[bytes]] = []
    looked = asyncio.Event()
    transports: list[Recording] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        receiving = asyncio.ensure_future(receive())
        await asyncio.sleep(0)
        seen.append(list(transports[0].writes))  # before the body arrives
        looked.set()
        receiving.cancel()

    protocol, transport = connect(ONE_WRITE, app)
    transports.append(transport)
    protocol.data_received(
        b"POST /mcp HTTP/1.1\r\nhost: localhost\r\ncontent-length: 2\r\nexpect: 100-continue\r\n\r\n"
    )
    await asyncio.wait_for(looked.wait(), WAIT)
    assert seen == [[b"HTTP/1.1 100 Continue\r\n\r\n"]]
    protocol.connection_lost(None)


def test_composes_with_the_read_timeouts() -> None:
    timed = timed_http_protocol(one_write_http_protocol("httptools"))
    assert issubclass(timed, ONE_WRITE)
    assert issubclass(ONE_WRITE, HttpToolsProtocol)


def test_other_protocols_are_left_as_they_are() -> None:
    assert one_write_http_protocol("h11") == "h11"


async def test_an_answered_cycle_is_freed_without_the_collector() -> None:
    """The held-head transport lets go of its cycle once the head is written: no reference cycle
    is left behind per request for the garbage collector to find."""
    answered = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await json_answer(scope, receive, send)
        answered.set()

    protocol, transport = connect(ONE_WRITE, app)
    gc.disable()
    try:
        protocol.data_received(post(b"1"))
        cycle = weakref.ref(protocol.cycle)
        await asyncio.wait_for(answered.wait(), WAIT)
        for task in list(protocol.tasks):
            await asyncio.wait_for(task, WAIT)
        answered.clear()
        protocol.data_received(post(b"2"))  # the protocol lets go of the first cycle for the second
        await asyncio.wait_for(answered.wait(), WAIT)
        assert cycle() is None
    finally:
        gc.enable()
        protocol.connection_lost(None)
    assert len(transport.writes) == 2
