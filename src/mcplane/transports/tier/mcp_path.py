"""The MCP endpoint's path: an HTTP request elsewhere is 404; a WebSocket upgrade forks off here.

Behind authentication, which serves the OAuth protected-resource metadata paths itself and
passes every other path but the MCP endpoint's through untouched. The layers below
(content type, body cap, session adoption, drain) are Streamable HTTP's: a WebSocket
connection checks its frames itself.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from mcplane.transports.tier.answers import respond
from mcplane.transports.tier.probes import NO_SUCH_ENDPOINT

__all__ = ["McpPath"]


class McpPath:
    def __init__(self, app: ASGIApp, path: str, websocket: ASGIApp) -> None:
        self.app = app
        self.path = path
        self.slashed = path + "/"
        self.websocket = websocket
        """Where a WebSocket handshake goes (it checks the path itself: no trailing slash there)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "websocket":
            await self.websocket(scope, receive, send)
        elif kind != "http" or scope["path"] in (self.path, self.slashed):
            await self.app(scope, receive, send)
        else:
            await respond(send, 404, NO_SUCH_ENDPOINT)
