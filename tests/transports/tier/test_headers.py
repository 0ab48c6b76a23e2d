"""headers_of: a request's headers decoded once, then shared through the scope."""

from __future__ import annotations

from mcplane.transports.tier.headers import headers_of
from tests.transports.tier.asgi import http_scope


def test_decoded_once_and_kept_in_the_scope() -> None:
    scope = http_scope(headers=[("Host", "localhost"), ("X-Twice", "first"), ("X-Twice", "last")])
    headers = headers_of(scope)
    assert headers == {"host": "localhost", "x-twice": "last"}
    scope["headers"] = []
    assert headers_of(scope) is headers, "later layers read the same dict, not a new one"
