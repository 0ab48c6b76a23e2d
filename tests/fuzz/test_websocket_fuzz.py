"""The WebSocket transport under fuzzed frames: text frames with any payload, binary frames, text
frames that are not UTF-8, oversized frames. A text frame of valid UTF-8 never ends the connection:
it is answered (a JSON-RPC error or result) or, for a notification or response, not answered; the
probe sent after it is answered on the same connection. The other frames end the connection with
the close code that says why (1003 binary, 1007 not UTF-8, 1009 too big). Every frame the server
sends is a JSON-RPC message, and a normal call from another connection succeeds after each example.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.conftest import REPO_ROOT, ServerProcess, start_server
from tests.fuzz.payloads import (
    ENVELOPE,
    FUZZ_SETTINGS,
    KNOWN_UVICORN_UTF8_ERROR,
    check_jsonrpc_message,
    check_no_trace,
    payloads,
    server_errors,
)

APP = REPO_ROOT / "deploy" / "testbed" / "app.py"
MAX_MESSAGE = 4 * 1024 * 1024
WAIT = 30.0
"""A hang fails the example (generous on a loaded machine; a healthy answer takes milliseconds)."""
CLOSE_BINARY, CLOSE_NOT_UTF8, CLOSE_TOO_BIG = 1003, 1007, 1009

counter = itertools.count(1)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server(APP, tmp_path=tmp_path_factory.mktemp("fuzz-ws"))
    yield server
    assert server.proc.poll() is None, "the server died during the fuzzing:\n" + server.stderr()[-3000:]
    server.stop()
    assert not server_errors(server.stderr(), allow=(KNOWN_UVICORN_UTF8_ERROR,)), server_errors(server.stderr())


def open_ws(server: ServerProcess) -> ClientConnection:
    return connect(server.ws_url, subprotocols=["mcp"], max_size=None, open_timeout=WAIT)  # type: ignore[list-item]


@pytest.fixture(scope="module")
def bystander(server: ServerProcess) -> Iterator[ClientConnection]:
    with open_ws(server) as ws:
        yield ws


def call(tool_text: str, request_id: Any) -> str:
    params = {"name": "echo", "arguments": {"text": tool_text}, "_meta": ENVELOPE}
    return orjson.dumps({"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}).decode()


def normal_call(ws: ClientConnection) -> None:
    n = next(counter)
    ws.send(call(f"still here {n}", n))
    answer = orjson.loads(ws.recv(timeout=WAIT))
    assert answer["id"] == n
    assert answer["result"]["structuredContent"] == {"result": f"still here {n}"}


def read_until(ws: ClientConnection, probe_id: str) -> None:
    """Read frames until the probe's answer; each must be a JSON-RPC message."""
    while True:
        frame = ws.recv(timeout=WAIT)
        assert isinstance(frame, str), f"a binary frame from the server: {frame[:100]!r}"
        check_no_trace(frame)
        message = orjson.loads(frame)
        check_jsonrpc_message(message)
        if message.get("id") == probe_id:
            return


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@FUZZ_SETTINGS
@given(payload=payloads, kind=st.sampled_from(["text", "text", "text", "binary"]))
def test_fuzzed_frames(server: ServerProcess, bystander: ClientConnection, payload: bytes, kind: str) -> None:
    probe_id = f"probe-{next(counter)}"
    closed: ConnectionClosed | None = None
    with open_ws(server) as ws:
        try:
            if kind == "binary":
                ws.send(payload)
            elif _utf8(payload):
                ws.send(payload.decode("utf-8"))
            else:
                ws.send(payload, text=True)  # a text frame that is not UTF-8
            ws.send(call("probe", probe_id))
            read_until(ws, probe_id)
        except ConnectionClosed as exc:
            closed = exc
    code = closed.rcvd.code if closed is not None and closed.rcvd is not None else None
    if kind == "binary":
        assert code == CLOSE_BINARY, f"a binary frame: {closed}"
    elif _utf8(payload):
        assert closed is None, f"a valid text frame ended the connection: {closed}"
    else:
        assert code == CLOSE_NOT_UTF8, f"a text frame that is not UTF-8: {closed}"
    normal_call(bystander)


@pytest.mark.parametrize("size", [MAX_MESSAGE + 1, 2 * MAX_MESSAGE])
def test_oversized_frames_close_with_1009(server: ServerProcess, bystander: ClientConnection, size: int) -> None:
    with open_ws(server) as ws:
        ws.send(call("x" * size, 1))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=WAIT)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == CLOSE_TOO_BIG
    normal_call(bystander)


def test_a_non_utf8_text_frame_is_not_logged_as_a_server_error(server: ServerProcess) -> None:
    before = len(server.stderr())
    with open_ws(server) as ws:
        ws.send(b'{"jsonrpc":"2.0","id":1,"method":"ping","params":"\xff"}', text=True)
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=WAIT)
    with open_ws(server) as ws:  # a round trip after it, so its log record has been written
        normal_call(ws)
    assert not server_errors(server.stderr()[before:])
