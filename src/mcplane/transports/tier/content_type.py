"""A POST to the MCP endpoint must be JSON: anything else is 415, answered as JSON-RPC.

The SDK checks too, but answers with a ``text/plain`` 400 that carries no error code. This runs
before the body cap, so a body that could never be served is refused before it is read.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from mcplane.errors import InvalidRequest
from mcplane.transports.tier.answers import refusal, respond
from mcplane.transports.tier.headers import headers_of

__all__ = ["NOT_JSON", "ContentType", "is_json"]

NOT_JSON = refusal(InvalidRequest("Content-Type must be application/json"))


def is_json(content_type: str | None) -> bool:
    """A JSON media type, as the SDK's own check has it (``application/json``, any parameters)."""
    return content_type is not None and content_type.lower().startswith("application/json")


class ContentType:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not is_json(headers_of(scope).get("content-type")):
            await respond(send, 415, NOT_JSON)
            return
        await self.app(scope, receive, send)
