"""Drain alone: while draining, new work is 503 with Retry-After and the request's id; the rest
(lists, notifications, DELETE) passes, as does everything while not draining."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from mcplane.transports.tier.body_cap import BODY_KEY
from mcplane.transports.tier.drain import Drain
from tests.transports.tier.asgi import Endpoint, drive, http_scope

SHUTTING_DOWN = {
    "code": "dependency_unavailable",
    "message": "the server is shutting down; retry on another instance",
    "retryable": True,
    "retry_after_ms": 1000,
}


@dataclass
class Server:
    draining: bool


def _post(*messages: Any) -> dict[str, Any]:
    body = orjson.dumps(messages[0] if len(messages) == 1 else list(messages))
    return http_scope(**{BODY_KEY: body})


def _call(request_id: Any, method: str = "tools/call") -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": {}}


@pytest.mark.parametrize("method", ["tools/call", "resources/read", "prompts/get", "subscriptions/listen"])
async def test_new_work_is_refused_with_its_id(method: str) -> None:
    endpoint = Endpoint()
    answer = await drive(Drain(endpoint, Server(draining=True)), _post(_call(7, method)))
    assert (answer.status, answer.headers["retry-after"]) == (503, "1")
    assert answer.json() == {
        "jsonrpc": "2.0",
        "id": 7,
        "error": {"code": -32000, "message": SHUTTING_DOWN["message"], "data": SHUTTING_DOWN},
    }
    assert endpoint.scopes == []


@pytest.mark.parametrize(
    ("scope", "request_id"),
    [
        (_post(_call(1), _call(2)), None),  # a batch starting two calls: no one id to answer
        (_post(_call(True)), None),  # an id that cannot be echoed
        (http_scope(**{BODY_KEY: b"{not json"}), None),
        (http_scope("GET"), None),  # a standalone SSE stream
    ],
    ids=["batch", "bool-id", "not-json", "get"],
)
async def test_other_new_work_is_refused_without_an_id(scope: dict[str, Any], request_id: Any) -> None:
    answer = await drive(Drain(Endpoint(), Server(draining=True)), scope)
    assert (answer.status, answer.json()["id"]) == (503, request_id)


@pytest.mark.parametrize(
    "scope",
    [
        _post(_call(8, "tools/list")),
        _post({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}}),
        _post({"jsonrpc": "2.0", "id": 3, "result": {}}),
        http_scope("DELETE"),
    ],
    ids=["list", "notification", "answer", "delete"],
)
async def test_what_helps_calls_in_flight_finish_passes(scope: dict[str, Any]) -> None:
    endpoint = Endpoint()
    assert (await drive(Drain(endpoint, Server(draining=True)), scope)).status == 200
    assert len(endpoint.scopes) == 1


async def test_nothing_is_refused_until_the_drain_starts() -> None:
    server = Server(draining=False)
    drain = Drain(Endpoint(), server)
    assert (await drive(drain, _post(_call(1)))).status == 200
    server.draining = True
    assert (await drive(drain, _post(_call(1)))).status == 503
