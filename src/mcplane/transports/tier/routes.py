"""Endpoints a provider added by exact path (the gateway's ``/integrity/...``), served as they are.

They come after the Host/Origin check (a rebinding page must not reach them either) and before
authentication: each authenticates its own requests, with its own credential (an admin token,
not a client's).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Receive, Scope, Send

if TYPE_CHECKING:
    from mcplane.layers import Route

__all__ = ["ProviderRoutes"]


class ProviderRoutes:
    def __init__(self, app: ASGIApp, routes: Mapping[str, Route]) -> None:
        self.app = app
        self.routes = routes
        """The plane's routes, by path; read on each request (providers add them as they start)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.routes.get(scope["path"]) if scope["type"] == "http" else None
        if route is not None:
            await route(scope, receive, send)
        else:
            await self.app(scope, receive, send)
