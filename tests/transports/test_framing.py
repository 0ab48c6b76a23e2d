"""One JSON-RPC message per frame: decoding, the error frames that answer bad input, encoding."""

from __future__ import annotations

import json

import pytest
from mcp.shared.message import SessionMessage
from mcp_types import JSONRPCNotification, JSONRPCRequest

from mcplane.transports.framing import decode_frame, encode_message, error_frame


def test_request_frame_decodes_to_a_session_message() -> None:
    decoded = decode_frame('{"jsonrpc": "2.0", "id": 3, "method": "ping"}')
    assert isinstance(decoded, SessionMessage)
    assert isinstance(decoded.message, JSONRPCRequest)
    assert (decoded.message.id, decoded.message.method) == (3, "ping")


def test_bytes_frames_decode_too() -> None:
    decoded = decode_frame(b'{"jsonrpc": "2.0", "method": "notifications/initialized"}\n')
    assert isinstance(decoded, SessionMessage)
    assert isinstance(decoded.message, JSONRPCNotification)


@pytest.mark.parametrize("frame", ["", "{", "not json", b"\xff\xfe", '{"jsonrpc": "2.0",}'])
def test_invalid_json_answers_parse_error(frame: str | bytes) -> None:
    answer = decode_frame(frame)
    assert isinstance(answer, str)
    error = json.loads(answer)
    assert error["jsonrpc"] == "2.0"
    assert error["id"] is None
    assert error["error"]["code"] == -32700


def test_batch_answers_invalid_request() -> None:
    answer = decode_frame('[{"jsonrpc": "2.0", "id": 1, "method": "ping"}]')
    assert isinstance(answer, str)
    error = json.loads(answer)
    assert (error["id"], error["error"]["code"], error["error"]["message"]) == (
        None,
        -32600,
        "batches are not supported",
    )


@pytest.mark.parametrize(
    ("frame", "expected_id"),
    [
        ('{"jsonrpc": "2.0", "id": 9, "method": 5}', 9),
        ('{"jsonrpc": "1.0", "id": "abc", "method": "ping"}', "abc"),
        ('{"id": true, "method": "ping"}', None),
        ('{"id": [1], "method": "ping"}', None),
        ("42", None),
        ('"ping"', None),
    ],
)
def test_non_jsonrpc_json_answers_invalid_request_with_a_usable_id(frame: str, expected_id: object) -> None:
    answer = decode_frame(frame)
    assert isinstance(answer, str)
    error = json.loads(answer)
    assert error["id"] == expected_id
    assert error["error"]["code"] == -32600
    assert error["error"]["data"] == {"code": "invalid_request"}


def test_error_frame_shape() -> None:
    assert json.loads(error_frame(4, -32600, "nope", "invalid_request")) == {
        "jsonrpc": "2.0",
        "id": 4,
        "error": {"code": -32600, "message": "nope", "data": {"code": "invalid_request"}},
    }
    assert json.loads(error_frame(False, -32700, "x", "y"))["id"] is None


def test_error_frame_wire_text_is_compact_and_ordered() -> None:
    assert error_frame("r-1", -32600, "message too large", "invalid_request") == (
        '{"jsonrpc":"2.0","id":"r-1","error":{"code":-32600,"message":"message too large",'
        '"data":{"code":"invalid_request"}}}'
    )


def test_encode_round_trips_and_is_one_line() -> None:
    original = '{"jsonrpc":"2.0","id":"r-1","method":"tools/call","params":{"name":"add","arguments":{"a":1}}}'
    decoded = decode_frame(original)
    assert isinstance(decoded, SessionMessage)
    encoded = encode_message(decoded)
    assert "\n" not in encoded
    assert json.loads(encoded) == json.loads(original)
