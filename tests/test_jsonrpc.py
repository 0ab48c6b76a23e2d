from __future__ import annotations

import json
import logging
from typing import Any

import orjson
import pydantic_core
import pytest

from mcplane.errors import PayloadTooLarge, RateLimited
from mcplane.jsonrpc import answer_bytes, dumps, error_bytes, error_envelope, mcplane_error_envelope, safe_id


@pytest.mark.parametrize(
    ("given", "echoed"), [(7, 7), ("a", "a"), (True, None), (None, None), ({"x": 1}, None), (1.5, None)]
)
def test_only_a_string_or_integer_id_is_echoed(given: Any, echoed: Any) -> None:
    assert safe_id(given) == echoed
    assert error_envelope(given, -32600, "bad")["id"] == echoed


def test_data_is_left_out_when_there_is_none() -> None:
    assert error_envelope(1, -32601, "no such method") == {
        "jsonrpc": "2.0",
        "id": 1,
        "error": {"code": -32601, "message": "no such method"},
    }


def test_an_mcplane_error_carries_its_object_in_data() -> None:
    envelope = mcplane_error_envelope("r1", RateLimited(retry_after_ms=250), correlation_id="c1")
    assert envelope["error"]["code"] == -32000
    assert envelope["error"]["data"] == {
        "code": "rate_limited",
        "message": "rate limit exceeded",
        "retryable": True,
        "retry_after_ms": 250,
        "correlation_id": "c1",
    }


def test_bytes_are_the_same_envelope() -> None:
    error = PayloadTooLarge()
    assert orjson.loads(error_bytes(None, error.jsonrpc_code, error.message, {"code": error.code})) == {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": -32600, "message": "request body too large", "data": {"code": "payload_too_large"}},
    }


def test_dumps_writes_what_orjson_refuses_as_the_sdks_writer_does() -> None:
    assert dumps({"id": 1, "n": [1, "ü"]}) == orjson.dumps({"id": 1, "n": [1, "ü"]})
    big = {"id": 1, "result": {"structuredContent": {"result": 2**70}, "low": -(2**64)}}
    assert dumps(big) == pydantic_core.to_json(big)
    assert json.loads(dumps(big))["result"]["structuredContent"]["result"] == 2**70


def test_a_response_nobody_can_write_is_answered_internal_error_for_its_id(caplog: pytest.LogCaptureFixture) -> None:
    response = {"jsonrpc": "2.0", "id": 7, "result": {"content": [{"type": "text", "text": "\ud800"}]}}
    with caplog.at_level(logging.ERROR, logger="mcplane.errors"):
        answer = orjson.loads(answer_bytes(response))
    assert answer["id"] == 7
    assert answer["error"]["data"]["code"] == "internal_error"
    assert "\ud800" not in caplog.text
    assert "answered internal_error" in caplog.text
    assert orjson.loads(answer_bytes({"jsonrpc": "2.0", "id": "a", "result": {"n": 2**64}}))["result"] == {"n": 2**64}
