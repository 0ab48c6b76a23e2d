"""While the server drains, a request that would start new work is refused: 503, ``Retry-After``.

New work is a call, a ``subscriptions/listen`` stream or a standalone SSE stream (``GET``); the
client is told ``dependency_unavailable`` (retryable) and retries on another replica. Everything
else passes: lists, pings, notifications, answers to the server's own requests, ``DELETE``; they
help the calls in flight finish. (The pipeline's own drain gate refuses calls that arrive by
other transports; this one answers before the protocol layer is involved at all.)
It runs behind the body cap: it reads the POST body the cap kept in the scope.
"""

from __future__ import annotations

from typing import Any, Protocol

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from mcplane.errors import DependencyUnavailable
from mcplane.jsonrpc import mcplane_error_envelope
from mcplane.transports.tier.answers import respond
from mcplane.transports.tier.body_cap import body_of

__all__ = ["REFUSED_WHILE_DRAINING", "Drain", "Draining", "new_work_in"]

REFUSED_WHILE_DRAINING = frozenset({"tools/call", "resources/read", "prompts/get", "subscriptions/listen"})
"""Requests that start new work; everything else (lists, pings, answers, cancellations) still passes,
so a client can finish what it has in flight (the SDK's client lists tools to check a result)."""
RETRY_SOON = ((b"retry-after", b"1"),)


class Draining(Protocol):
    """The server's drain flag: set on the first stop signal, never cleared."""

    draining: bool


def new_work_in(body: bytes) -> list[Any] | None:
    """The ids of the requests in a POST body that would start new work; ``None``: not JSON."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    messages: list[Any] = parsed if isinstance(parsed, list) else [parsed]  # pyright: ignore[reportUnknownVariableType]
    return [
        m.get("id") for m in messages if isinstance(m, dict) and "id" in m and m.get("method") in REFUSED_WHILE_DRAINING
    ]


def shutting_down(request_id: Any) -> bytes:
    error = DependencyUnavailable("the server is shutting down; retry on another instance", retry_after_ms=1000)
    return orjson.dumps(mcplane_error_envelope(request_id, error))


class Drain:
    def __init__(self, app: ASGIApp, server: Draining) -> None:
        self.app = app
        self.server = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.server.draining or scope["type"] != "http" or scope["method"] == "DELETE":
            await self.app(scope, receive, send)
            return
        request_ids: list[Any] | None = [None]
        if scope["method"] == "POST":
            body = body_of(scope)
            request_ids = None if body is None else new_work_in(body)
            if request_ids is not None and not request_ids:
                await self.app(scope, receive, send)
                return
        request_id = request_ids[0] if request_ids and len(request_ids) == 1 else None
        await respond(send, 503, shutting_down(request_id), extra_headers=RETRY_SOON)
