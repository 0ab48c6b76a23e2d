"""The body cap: a request body over ``max_body_bytes`` is refused with 413, from here only.

A declared ``Content-Length`` over the cap is refused before a byte is read; a POST body is then
read whole, counting an undeclared (chunked) one against the cap as it arrives, and kept in the
scope (:func:`body_of`) for the layers below: the drain check looks for new work in it, the hot
path answers from it, and the SDK gets it replayed, unchanged. It runs behind authentication,
so nobody unauthenticated makes the server read a body.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from mcplane.errors import PayloadTooLarge
from mcplane.transports.tier.answers import refusal, respond
from mcplane.transports.tier.headers import headers_of

__all__ = ["BODY_KEY", "TOO_LARGE", "BodyCap", "body_of", "read_body"]

BODY_KEY = "mcplane.body"
"""The scope key holding a POST's body, read whole under the cap."""
TOO_LARGE = refusal(PayloadTooLarge())


def body_of(scope: Scope) -> bytes | None:
    """The body the cap read (a POST's), ``None`` for other requests."""
    return scope.get(BODY_KEY)


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or ``None`` as soon as it grows past ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b""  # the client went away: the protocol layer sees an empty body and a disconnect
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


class BodyCap:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.limit = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = headers_of(scope).get("content-length")
        body: bytes | None = b""
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            body = None
        elif scope["method"] == "POST":
            body = await read_body(receive, self.limit)
            scope[BODY_KEY] = body
        if body is None:
            await respond(send, 413, TOO_LARGE)
            return
        await self.app(scope, receive, send)
