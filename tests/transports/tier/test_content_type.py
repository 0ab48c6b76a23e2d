"""ContentType alone: a POST that is not JSON is 415 as JSON-RPC, before its body is read."""

from __future__ import annotations

import pytest

from mcplane.transports.tier.content_type import ContentType
from tests.transports.tier.asgi import Endpoint, chunks_receive, drive, http_scope

NOT_JSON = (
    b'{"jsonrpc":"2.0","id":null,"error":{"code":-32600,'
    b'"message":"Content-Type must be application/json","data":{"code":"invalid_request"}}}'
)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_a_post_that_is_not_json_is_415(content_type: str | None) -> None:
    endpoint = Endpoint()
    receive, read = chunks_receive(b"{}")
    headers = [] if content_type is None else [("content-type", content_type)]
    answer = await drive(ContentType(endpoint), http_scope(headers=headers), receive)
    assert (answer.status, answer.body) == (415, NOT_JSON)
    assert (read[0], endpoint.scopes) == (0, [])


@pytest.mark.parametrize("content_type", ["application/json", "Application/JSON; charset=utf-8"])
async def test_json_passes(content_type: str) -> None:
    answer = await drive(ContentType(Endpoint()), http_scope(headers=[("content-type", content_type)]))
    assert answer.status == 200


async def test_other_methods_need_no_content_type() -> None:
    assert (await drive(ContentType(Endpoint()), http_scope("GET"))).status == 200
