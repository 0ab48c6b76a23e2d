"""A request's headers as a dict, built once per request and shared by every layer of the tier.

The Host/Origin check, the content-type check, the body cap, session adoption and the hot path
all read a header or two; decoding the header list once (and keeping the result in the scope)
costs one dict per request however many layers look.
"""

from __future__ import annotations

from starlette.types import Scope

__all__ = ["HEADERS_KEY", "headers_of"]

HEADERS_KEY = "mcplane.headers"
"""The scope key holding the decoded headers (lower-case names; the last of repeated ones)."""


def headers_of(scope: Scope) -> dict[str, str]:
    """The request's headers, decoded once and kept in the scope (a layer that rewrites
    ``scope["headers"]`` does so before anything reads them: see :mod:`.host_origin`)."""
    headers: dict[str, str] | None = scope.get(HEADERS_KEY)
    if headers is None:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        scope[HEADERS_KEY] = headers
    return headers
