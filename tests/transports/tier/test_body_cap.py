"""BodyCap alone: the one 413 (declared or counted), and a POST body read once, kept in the scope."""

from __future__ import annotations

from mcplane.transports.tier.body_cap import BodyCap, body_of
from tests.transports.tier.asgi import Endpoint, chunks_receive, drive, http_scope

TOO_LARGE = (
    b'{"jsonrpc":"2.0","id":null,'
    b'"error":{"code":-32600,"message":"request body too large","data":{"code":"payload_too_large"}}}'
)


async def test_a_declared_length_over_the_cap_is_413_before_a_byte_is_read() -> None:
    endpoint = Endpoint()
    receive, read = chunks_receive(b"x" * 11)
    answer = await drive(BodyCap(endpoint, 10), http_scope(headers=[("content-length", "11")]), receive)
    assert (answer.status, answer.body, answer.headers["content-type"]) == (413, TOO_LARGE, "application/json")
    assert (read[0], endpoint.scopes) == (0, [])


async def test_a_declared_length_counts_on_any_method() -> None:
    answer = await drive(BodyCap(Endpoint(), 10), http_scope("GET", headers=[("content-length", "11")]))
    assert answer.status == 413


async def test_an_undeclared_body_is_counted_as_it_arrives() -> None:
    endpoint = Endpoint()
    receive, read = chunks_receive(b"x" * 6, b"x" * 6, b"x" * 6)
    answer = await drive(BodyCap(endpoint, 10), http_scope(), receive)
    assert (answer.status, answer.body) == (413, TOO_LARGE)
    assert (read[0], endpoint.scopes) == (2, []), "stops reading at the chunk that crosses the cap"


async def test_a_body_under_the_cap_is_read_once_and_kept_for_the_layers_below() -> None:
    endpoint = Endpoint()
    receive, read = chunks_receive(b"12345", b"67890")
    answer = await drive(BodyCap(endpoint, 10), http_scope(headers=[("content-length", "10")]), receive)
    assert (answer.status, answer.body) == (200, b"endpoint:")
    assert body_of(endpoint.scopes[0]) == b"1234567890"
    assert read[0] == 2


async def test_a_client_gone_mid_body_leaves_an_empty_body() -> None:
    endpoint = Endpoint()

    async def gone() -> dict[str, str]:
        return {"type": "http.disconnect"}

    await drive(BodyCap(endpoint, 10), http_scope(), gone)
    assert body_of(endpoint.scopes[0]) == b""


async def test_other_methods_are_not_read() -> None:
    endpoint = Endpoint()
    receive, read = chunks_receive(b"{}")
    answer = await drive(BodyCap(endpoint, 10), http_scope("GET"), receive)
    assert (answer.status, read[0], body_of(endpoint.scopes[0])) == (200, 0, None)
