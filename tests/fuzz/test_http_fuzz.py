"""Streamable HTTP under fuzzed POST bodies: the server never crashes or hangs, answers every body
with a clean HTTP status and (unless it is 202) a JSON-RPC message, and serves a normal call from
another client right after. One long-lived ``mcplane run`` for the module."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import REPO_ROOT, ServerProcess, start_server
from tests.fuzz.payloads import (
    ENVELOPE,
    FUZZ_SETTINGS,
    check_jsonrpc_message,
    check_no_trace,
    payloads,
    server_errors,
    sse_messages,
)

APP = REPO_ROOT / "deploy" / "testbed" / "app.py"
MAX_BODY = 4 * 1024 * 1024
TIMEOUT = httpx.Timeout(30.0)
"""A hang fails the example (30 s: generous on a loaded machine; a healthy answer takes milliseconds)."""

HEADER_SETS = [
    {"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "echo"},
    {"MCP-Protocol-Version": "2026-07-28"},
    {"MCP-Protocol-Version": "2025-11-25"},
    {"MCP-Protocol-Version": "1999-01-01"},
    {},
]
CONTENT_TYPES = ["application/json", "application/json; charset=utf-8", "APPLICATION/JSON"]
"""JSON media types only: a POST of another type is :func:`test_non_json_content_type_gets_a_jsonrpc_error`."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server(APP, tmp_path=tmp_path_factory.mktemp("fuzz-http"))
    yield server
    assert server.proc.poll() is None, "the server died during the fuzzing:\n" + server.stderr()[-3000:]
    server.stop()
    assert not server_errors(server.stderr()), server_errors(server.stderr())


@pytest.fixture(scope="module")
def fuzzer() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=TIMEOUT) as client:
        yield client


@pytest.fixture(scope="module")
def bystander() -> Iterator[httpx.Client]:
    """Another client, on its own connection: its normal call must go through after every example."""
    with httpx.Client(timeout=TIMEOUT) as client:
        yield client


def normal_call(client: httpx.Client, server: ServerProcess, n: int) -> None:
    body = {
        "jsonrpc": "2.0",
        "id": n,
        "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": f"still here {n}"}, "_meta": ENVELOPE},
    }
    headers = {
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2026-07-28",
        "Mcp-Method": "tools/call",
        "Mcp-Name": "echo",
    }
    response = client.post(server.url, json=body, headers=headers)
    assert response.status_code == 200, response.text
    message = orjson.loads(response.content)
    assert message["result"]["structuredContent"] == {"result": f"still here {n}"}


def check_answer(response: httpx.Response) -> None:
    assert response.status_code < 500, f"HTTP {response.status_code}: {response.content[:300]!r}"
    check_no_trace(response.content)
    if response.status_code == 202:
        return  # a notification or a response was accepted; nothing to answer
    content_type = response.headers.get("content-type", "")
    assert response.content, f"HTTP {response.status_code} with an empty body"
    if content_type.startswith("text/event-stream"):
        events = sse_messages(response.content)
        assert events, response.content[:300]
        for message in events:
            check_jsonrpc_message(message)
        return
    assert content_type.startswith("application/json"), f"{content_type}: {response.content[:300]!r}"
    message = orjson.loads(response.content)
    for item in message if isinstance(message, list) else [message]:
        check_jsonrpc_message(item, error_required=response.status_code >= 400)


counter = iter(range(1, 10**9))


@FUZZ_SETTINGS
@given(body=payloads, headers=st.sampled_from(HEADER_SETS), content_type=st.sampled_from(CONTENT_TYPES))
def test_fuzzed_post_bodies(
    server: ServerProcess,
    fuzzer: httpx.Client,
    bystander: httpx.Client,
    body: bytes,
    headers: dict[str, str],
    content_type: str,
) -> None:
    sent = {"Accept": "application/json, text/event-stream", "Content-Type": content_type, **headers}
    check_answer(fuzzer.post(server.url, content=body, headers=sent))
    normal_call(bystander, server, next(counter))


@pytest.mark.parametrize("size", [MAX_BODY + 1, 3 * MAX_BODY])
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_oversized_bodies_get_413_and_a_jsonrpc_error(
    server: ServerProcess, fuzzer: httpx.Client, bystander: httpx.Client, size: int, chunked: bool
) -> None:
    payload = b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":"' + b"x" * size + b'"}}'
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    content: bytes | Iterator[bytes] = payload
    if chunked:
        content = iter([payload[i : i + 65536] for i in range(0, len(payload), 65536)])
    try:
        response = fuzzer.post(server.url, content=content, headers=headers)
    except httpx.WriteError:
        pass  # the server answered and closed before the client finished writing: also a clean refusal
    else:
        assert response.status_code == 413
        check_jsonrpc_message(orjson.loads(response.content), error_required=True)
    normal_call(bystander, server, next(counter))


@pytest.mark.parametrize("content_type", ["text/plain", None, "application/xml"], ids=["text", "none", "xml"])
def test_non_json_content_type_gets_a_jsonrpc_error(
    server: ServerProcess, fuzzer: httpx.Client, bystander: httpx.Client, content_type: str | None
) -> None:
    body = b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{}}}'
    request = fuzzer.build_request("POST", server.url, content=body, headers=HEADER_SETS[1])
    request.headers["Accept"] = "application/json, text/event-stream"
    if content_type is None:
        request.headers.pop("Content-Type", None)  # httpx sets none for raw content; make sure
    else:
        request.headers["Content-Type"] = content_type
    response = fuzzer.send(request)
    normal_call(bystander, server, next(counter))
    assert response.status_code in (400, 415)
    assert response.headers.get("content-type", "").startswith("application/json"), response.content
    check_jsonrpc_message(orjson.loads(response.content), error_required=True)


@pytest.mark.parametrize("body", [b"[]", b'{"jsonrpc":"2.0"}', b'[{"jsonrpc":"2.0","id":1,"method":"ping"}]'])
def test_malformed_message_gets_a_concise_invalid_request(
    server: ServerProcess, fuzzer: httpx.Client, body: bytes
) -> None:
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    response = fuzzer.post(server.url, content=body, headers=headers)
    assert response.status_code == 400
    error = orjson.loads(response.content)["error"]
    assert error["code"] == -32600, error
    assert "pydantic" not in error["message"], error["message"]
    assert "input_value" not in error["message"], error["message"]
