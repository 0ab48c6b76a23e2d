"""HostOrigin alone: allowed requests pass with their headers normalized; refusals are JSON-RPC
(HTTP) or a 1008 close (WebSocket), and each is reported once."""

from __future__ import annotations

import pytest

from mcplane.transports.security import HostOriginPolicy
from mcplane.transports.tier.headers import headers_of
from mcplane.transports.tier.host_origin import VERDICTS_KEPT, HostOrigin
from tests.transports.tier.asgi import Endpoint, chunks_receive, drive, http_scope, refusal_of, websocket_scope

Refused = list[tuple[int, str, str]]
HOST, ORIGIN = ("host", "localhost"), ("origin", "http://localhost")


def _layer() -> tuple[HostOrigin, Endpoint, Refused]:
    endpoint, refused = Endpoint(), []
    return HostOrigin(endpoint, HostOriginPolicy(), lambda *seen: refused.append(seen)), endpoint, refused


async def test_an_allowed_request_passes_with_surrounding_blanks_stripped() -> None:
    layer, endpoint, refused = _layer()
    answer = await drive(layer, http_scope(headers=[("Host", "localhost:8000 \t"), ("X-Note", " kept\t")]))
    assert answer.status == 200
    assert endpoint.scopes[0]["headers"] == [(b"host", b"localhost:8000"), (b"x-note", b"kept")]
    assert headers_of(endpoint.scopes[0])["host"] == "localhost:8000"
    assert refused == []


@pytest.mark.parametrize(
    ("headers", "status", "message", "code", "reason"),
    [
        ([("host", "attacker.example")], 421, "host not allowed", "forbidden", "host_not_allowed"),
        ([HOST, ("origin", "https://evil.example")], 403, "origin not allowed", "forbidden", "origin_not_allowed"),
        ([HOST, HOST], 400, "duplicate host header", "invalid_request", "duplicate_host"),
        ([HOST, ORIGIN, ORIGIN], 400, "duplicate origin header", "invalid_request", "duplicate_origin"),
    ],
)
async def test_a_refused_request_gets_a_jsonrpc_body_and_is_counted(
    headers: list[tuple[str, str]], status: int, message: str, code: str, reason: str
) -> None:
    layer, endpoint, refused = _layer()
    receive, read = chunks_receive(b"{}")
    answer = await drive(layer, http_scope(headers=headers), receive)
    assert answer.status == status
    assert refusal_of(answer) == {"code": -32600, "message": message, "data": {"code": code}}
    assert answer.json()["id"] is None
    assert refused == [(status, reason, "203.0.113.9")]
    assert (endpoint.scopes, read[0]) == ([], 0)


async def test_a_refused_websocket_handshake_is_closed_before_it_is_accepted() -> None:
    layer, endpoint, refused = _layer()
    answer = await drive(layer, websocket_scope(headers=[("host", "attacker.example")]), _connect)
    assert answer.messages == [{"type": "websocket.close", "code": 1008, "reason": "host not allowed"}]
    assert (endpoint.scopes, refused) == ([], [(421, "host_not_allowed", "203.0.113.9")])


async def test_an_allowed_websocket_handshake_passes() -> None:
    layer, endpoint, _ = _layer()
    answer = await drive(layer, websocket_scope(headers=[("host", "127.0.0.1:9")]), _connect)
    assert answer.messages == [{"type": "websocket.accept"}]
    assert len(endpoint.scopes) == 1


async def test_other_scopes_pass_untouched() -> None:
    layer, endpoint, _ = _layer()
    scope = {"type": "lifespan"}
    await layer(scope, chunks_receive()[0], _send_nothing)
    assert endpoint.scopes == [scope]


async def _connect() -> dict[str, str]:
    return {"type": "websocket.connect"}


async def _send_nothing(message: object) -> None:
    raise AssertionError(message)


class _CountingPolicy(HostOriginPolicy):
    """The default policy, counting how often it is asked."""

    asked: list[tuple[str | None, str | None]]

    def check(self, host: str | None, origin: str | None) -> tuple[int, str] | None:
        self.asked.append((host, origin))
        return super().check(host, origin)


async def test_a_verdict_is_remembered_per_pair_and_every_refusal_still_counted() -> None:
    policy = _CountingPolicy()
    object.__setattr__(policy, "asked", [])
    endpoint, refused = Endpoint(), list[tuple[int, str, str]]()

    def on_refused(status: int, reason: str, peer: str) -> None:
        refused.append((status, reason, peer))

    layer = HostOrigin(endpoint, policy, on_refused)
    for _ in range(3):
        assert (await drive(layer, http_scope(headers=[HOST]))).status == 200
        assert (await drive(layer, http_scope(headers=[("host", "attacker.example")]))).status == 421
    assert policy.asked == [("localhost", None), ("attacker.example", None)]
    assert len(endpoint.scopes) == 3
    assert refused == [(421, "host_not_allowed", "203.0.113.9")] * 3


async def test_remembered_verdicts_are_bounded() -> None:
    layer, _, refused = _layer()
    for i in range(VERDICTS_KEPT * 2 + 1):
        await drive(layer, http_scope(headers=[("host", f"h{i}.example")]))
    assert len(layer._verdicts) <= VERDICTS_KEPT  # pyright: ignore[reportPrivateUsage]
    assert len(refused) == VERDICTS_KEPT * 2 + 1
