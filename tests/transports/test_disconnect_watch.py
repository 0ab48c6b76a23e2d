"""A suspended hot-path call whose client goes away is cancelled and answered with nothing.

Served by mcplane's own uvicorn protocol (``one_write_http_protocol``), the connection calls back
when it is lost (``on_disconnect``: no task watches ``receive``); served by uvicorn's own protocol,
a task watches ``receive`` for ``http.disconnect``. Both cancel the call the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import anyio
import orjson
import pytest
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from mcplane import Plane
from mcplane.transports import http_fast
from mcplane.transports.http import HTTPApp, HTTPOptions
from mcplane.transports.http_write import on_disconnect, one_write_http_protocol
from tests.observability.support import modern_call, modern_headers
from tests.serving import serving
from tests.transports.wire import connect

WAIT = 30.0
ONE_WRITE = one_write_http_protocol("httptools")


class Gate:
    def __init__(self) -> None:
        self.started = anyio.Event()
        self.cancelled = anyio.Event()


def gated_plane() -> tuple[Plane, Gate]:
    plane = Plane("gated")
    gate = Gate()

    @plane.tool()
    async def wait(text: str) -> str:
        gate.started.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            gate.cancelled.set()
            raise
        return text

    return plane, gate


def request(name: str, arguments: dict[str, Any]) -> bytes:
    body = orjson.dumps(modern_call(name, arguments))
    headers = {**modern_headers(name), "host": "127.0.0.1", "content-length": str(len(body))}
    head = "".join(f"{key}: {value}\r\n" for key, value in headers.items())
    return f"POST /mcp HTTP/1.1\r\n{head}\r\n".encode() + body


@pytest.mark.parametrize("protocol", ["one-write", "httptools"])
async def test_a_suspended_call_whose_client_goes_away_is_cancelled(
    protocol: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    watched: list[bool] = []

    def spy(receive: Any, gone: Any) -> Any:
        stop = on_disconnect(receive, gone)
        watched.append(stop is not None)
        return stop

    monkeypatch.setattr(http_fast, "on_disconnect", spy)
    plane, gate = gated_plane()
    app = HTTPApp(plane, HTTPOptions())
    async with app.running(), serving(app, http=ONE_WRITE if protocol == "one-write" else "httptools") as base:
        stream = await anyio.connect_tcp("127.0.0.1", urlsplit(base).port or 0)
        await stream.send(request("wait", {"text": "x"}))
        with anyio.fail_after(WAIT):
            await gate.started.wait()
        await stream.aclose()
        with anyio.fail_after(WAIT):
            await gate.cancelled.wait()
        assert app.fast is not None
        assert app.fast.served == 1
    assert watched == [protocol == "one-write"]  # the connection's callback, or a task on ``receive``


async def never_answers(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await anyio.sleep_forever()


@contextmanager
def watched_request(protocol_class: Any) -> Iterator[tuple[Any, Callable[[], None] | None, list[str]]]:
    """A connection of ``protocol_class`` with one request in flight (its app never answers), watched by
    ``on_disconnect``: the protocol, what stops the watch, and what the watch was called back with."""
    protocol, _ = connect(protocol_class, never_answers)
    protocol.data_received(b"POST /mcp HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n")
    gone: list[str] = []
    try:
        yield protocol, on_disconnect(protocol.cycle.receive, lambda: gone.append("gone")), gone
    finally:
        for task in list(protocol.tasks):
            task.cancel()


async def test_the_callback_fires_once_for_the_request_the_connection_marks_disconnected() -> None:
    with watched_request(ONE_WRITE) as (protocol, stop, gone):
        assert stop is not None
        assert gone == []
        protocol.connection_lost(None)
        protocol.connection_lost(None)  # told twice: called back once
        assert gone == ["gone"]
        stop()  # after the fact: nothing
        assert gone == ["gone"]
        late: list[str] = []
        assert on_disconnect(protocol.cycle.receive, lambda: late.append("gone")) is not None
        assert late == ["gone"], "a request already disconnected is called back at once"


async def test_a_stopped_watch_is_not_called_back() -> None:
    with watched_request(ONE_WRITE) as (protocol, stop, gone):
        assert stop is not None
        stop()
        protocol.connection_lost(None)
        assert gone == []


async def test_other_receives_are_left_to_a_watcher() -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    assert on_disconnect(receive, lambda: None) is None
    with watched_request(HttpToolsProtocol) as (_, stop, _):  # uvicorn's own protocol: its cycles are not ours
        assert stop is None
