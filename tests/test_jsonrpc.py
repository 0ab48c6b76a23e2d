from __future__ import annotations

from typing import Any

import orjson
import pytest

from mcplane.errors import PayloadTooLarge, RateLimited
from mcplane.jsonrpc import error_bytes, error_envelope, mcplane_error_envelope, safe_id


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
