"""What the fuzz tests send (hypothesis strategies) and what every answer must look like (oracles).

A payload is the bytes of one HTTP body, WebSocket frame or stdio line: JSON-RPC-shaped objects
with wrong or odd fields (ids of every JSON type, huge and duplicate ids, unknown methods, wrong
params), batches, arbitrary JSON, deep nesting, invalid JSON, invalid UTF-8 and random bytes.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

FUZZ_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    database=None,  # no example database written into the work tree; a failure prints its example
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)

METHODS = [
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/read",
    "resources/templates/list",
    "prompts/list",
    "prompts/get",
    "server/discover",
    "completion/complete",
    "logging/setLevel",
    "tasks/get",
    "tasks/list",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
]
"""Known methods (``subscriptions/listen`` is left out: it opens a stream that rightly stays open)."""
TOOLS = ["echo", "catalog", "quota_lookup", "slow_report", "debug_stats", "nope"]
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
}

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
ids = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63),
    st.integers(min_value=2**64, max_value=2**256),  # beyond every fixed-width integer
    st.text(max_size=12),
    st.text(min_size=2000, max_size=4000),  # a huge id
    st.none(),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.lists(scalars, max_size=3),
    st.dictionaries(st.text(max_size=5), scalars, max_size=3),
)
tool_params = st.fixed_dictionaries(
    {"name": st.one_of(st.sampled_from(TOOLS), st.text(max_size=20))},
    optional={
        "arguments": st.one_of(
            st.fixed_dictionaries({}, optional={"text": json_values, "sku": json_values, "ms": json_values}),
            json_values,
        ),
        "_meta": st.one_of(st.just(ENVELOPE), json_values),
    },
)
messages = st.fixed_dictionaries(
    {},
    optional={
        "jsonrpc": st.one_of(st.just("2.0"), st.just("2.0"), st.just("1.0"), scalars),
        "id": ids,
        "method": st.one_of(st.sampled_from(METHODS), st.text(max_size=30), scalars),
        "params": st.one_of(tool_params, json_values, st.just({"_meta": ENVELOPE})),
        "result": json_values,
        "error": st.one_of(json_values, st.fixed_dictionaries({"code": st.integers(), "message": st.text()})),
    },
)
batches = st.lists(messages, min_size=0, max_size=5)
duplicate_ids = st.tuples(messages, st.integers(min_value=0, max_value=3)).map(
    lambda pair: [{**pair[0], "id": 7}] * (pair[1] + 2)
)
json_documents = st.one_of(messages, messages, batches, duplicate_ids, json_values)


def _encode(value: Any) -> bytes:
    # The standard library writes integers of any size (orjson stops at 64 bits).
    return json.dumps(value).encode()


def _nested(depth: int, kind: str) -> bytes:
    if kind == "list":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


deep = st.tuples(st.sampled_from([64, 512, 1025, 5000, 100_000]), st.sampled_from(["list", "object"])).map(
    lambda pair: _nested(*pair)
)
deep_in_params = st.sampled_from([600, 1025, 3000]).map(
    lambda depth: (
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":'
        + _nested(depth, "list")
        + b"}}}"
    )
)


def _mutate(data: bytes, position: int, insert: bytes, cut: bool) -> bytes:
    position = position % (len(data) + 1)
    return data[:position] if cut else data[:position] + insert + data[position:]


INVALID_UTF8 = [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80"]
mutated = st.builds(
    _mutate,
    json_documents.map(_encode),
    st.integers(min_value=0),
    st.sampled_from([*INVALID_UTF8, b"\x00", b"}", b"\\", b'"', b"\n"]),
    st.booleans(),
)
invalid_utf8_strings = st.tuples(st.sampled_from(INVALID_UTF8), ids).map(
    lambda pair: (
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"'
        + pair[0]
        + b'"}}}'
    )
)
payloads = st.one_of(
    json_documents.map(_encode),
    json_documents.map(_encode),
    mutated,
    invalid_utf8_strings,
    deep,
    deep_in_params,
    st.binary(max_size=300),
    st.text(max_size=200).map(str.encode),
)


# ---------------------------------------------------------------------------------------------- oracles
def check_jsonrpc_message(message: Any, *, error_required: bool = False) -> None:
    """A JSON-RPC 2.0 response (``result`` or a well-formed ``error``), or a request/notification
    the server sends (streams carry those too)."""
    assert isinstance(message, dict), f"not a JSON object: {message!r}"
    assert message.get("jsonrpc") == "2.0", message
    if "method" in message and not error_required:
        assert isinstance(message["method"], str), message
        return
    assert "id" in message, message
    assert ("result" in message) != ("error" in message), message
    if error_required:
        assert "error" in message, message
    if "error" in message:
        error = message["error"]
        assert isinstance(error, dict), message
        assert type(error.get("code")) is int, message
        assert isinstance(error.get("message"), str), message


def check_no_trace(text: bytes | str) -> None:
    raw = text.encode() if isinstance(text, str) else text
    assert b"Traceback (most recent call last)" not in raw, raw[:500]
    assert b'File "/' not in raw, raw[:500]


def sse_messages(body: bytes) -> list[Any]:
    out: list[Any] = []
    for event in body.replace(b"\r\n", b"\n").split(b"\n\n"):
        data = b"\n".join(line[5:].lstrip(b" ") for line in event.split(b"\n") if line.startswith(b"data:"))
        if data:
            out.append(json.loads(data))
    return out


KNOWN_UVICORN_UTF8_ERROR = "Invalid UTF-8 sequence received from client."
"""uvicorn logs each non-UTF-8 WebSocket text frame at ERROR with a traceback (see test_websocket_fuzz)."""


def server_errors(stderr: str, *, allow: tuple[str, ...] = ()) -> list[str]:
    """The server's log records at ERROR or above, or with a traceback (JSON lines), except ``allow``ed messages."""
    found: list[str] = []
    for line in stderr.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            if "Traceback" in line:
                found.append(line[:300])
            continue
        if not isinstance(record, dict):
            continue
        bad = record.get("level") in ("error", "critical") or "exception" in record
        if bad and record.get("message") not in allow:
            found.append(line[:300])
    return found
