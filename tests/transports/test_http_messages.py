"""What reaches the SDK's Streamable HTTP transport is checked first, and refused as JSON-RPC: a
POST that is not JSON (415), a 2025-11-25 body that is JSON but not one JSON-RPC message
(400, ``-32600``, never the validator's report echoing the input)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import ServerProcess

ACCEPT = {"accept": "application/json, text/event-stream"}
PING = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'


@pytest.fixture
def http(e2e_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=e2e_server.base, timeout=30) as client:
        yield client


def _error(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["jsonrpc"] == "2.0"
    return body


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
@pytest.mark.parametrize("version", [None, "2025-11-25", "2026-07-28"])
def test_a_post_that_is_not_json_is_415(http: httpx.Client, content_type: str | None, version: str | None) -> None:
    request = http.build_request("POST", "/mcp", content=PING, headers=ACCEPT)
    request.headers.pop("content-type", None)
    if content_type is not None:
        request.headers["content-type"] = content_type
    if version is not None:
        request.headers["mcp-protocol-version"] = version
    response = http.send(request)
    assert response.status_code == 415
    body = _error(response)
    assert body["id"] is None
    assert body["error"] == {
        "code": -32600,
        "message": "Content-Type must be application/json",
        "data": {"code": "invalid_request"},
    }


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON"])
def test_json_media_types_pass(http: httpx.Client, content_type: str) -> None:
    response = http.post("/mcp", content=b"[]", headers={**ACCEPT, "content-type": content_type})
    assert response.status_code == 400  # past the media type check, refused as a message (below)


@pytest.mark.parametrize(
    ("body", "request_id", "message"),
    [
        (b'{"jsonrpc":"2.0","id":7,"method":5}', 7, "invalid request: not a JSON-RPC 2.0 message"),
        (b'{"jsonrpc":"2.0","id":"a","params":{"secret":"input"}}', "a", "invalid request: not a JSON-RPC 2.0 message"),
        (b'{"jsonrpc":"2.0"}', None, "invalid request: not a JSON-RPC 2.0 message"),
        (b"42", None, "invalid request: not a JSON-RPC 2.0 message"),
        (b'{"jsonrpc":"2.0","id":18446744073709551616}', None, "invalid request: not a JSON-RPC 2.0 message"),
        (b"[" + PING + b"]", None, "batches are not supported"),
    ],
    ids=["method-not-a-string", "no-method", "bare", "scalar", "id-beyond-64-bits", "batch"],
)
@pytest.mark.parametrize("version", [None, "2025-11-25"])
def test_a_handshake_era_body_that_is_not_a_message_is_400(
    http: httpx.Client, body: bytes, request_id: Any, message: str, version: str | None
) -> None:
    headers = {**ACCEPT, "content-type": "application/json"}
    if version is not None:
        headers["mcp-protocol-version"] = version
    response = http.post("/mcp", content=body, headers=headers)
    assert response.status_code == 400
    answer = _error(response)
    assert answer["id"] == request_id
    assert answer["error"] == {"code": -32600, "message": message, "data": {"code": "invalid_request"}}
    assert b"input" not in response.content


def test_a_body_that_is_not_json_is_still_a_parse_error(http: httpx.Client) -> None:
    response = http.post("/mcp", content=b"{nope", headers={**ACCEPT, "content-type": "application/json"})
    assert response.status_code == 400
    assert _error(response)["error"]["code"] == -32700
