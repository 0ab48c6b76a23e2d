"""``/health``, ``/ready`` and ``/metrics``: answered first, before the Host/Origin check.

Probes come from the orchestrator and the scraper, which address a pod by its IP: a Host
allow-list meant for clients would refuse them. They read nothing from the request.
"""

from __future__ import annotations

from typing import Protocol

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from mcplane.errors import NotFound
from mcplane.transports.tier.answers import refusal, respond

__all__ = ["NO_SUCH_ENDPOINT", "Probed", "Probes"]

NO_SUCH_ENDPOINT = refusal(NotFound("no such endpoint"))
HEALTHY = b'{"status":"ok"}'


class Probed(Protocol):
    """What the probes ask the server."""

    async def readiness(self) -> tuple[bool, dict[str, str]]:
        """Whether the server is ready, and what each of its checks said."""
        ...

    async def scrape(self) -> tuple[bytes, str] | None:
        """The Prometheus text and its content type; ``None`` when this port serves no metrics."""
        ...


class Probes:
    def __init__(self, app: ASGIApp, server: Probed) -> None:
        self.app = app
        self.server = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path == "/health":
                await respond(send, 200, HEALTHY)
                return
            if path == "/ready":
                ready, checks = await self.server.readiness()
                body = {"status": "ready" if ready else "not ready", "checks": checks}
                await respond(send, 200 if ready else 503, orjson.dumps(body))
                return
            if path == "/metrics":
                scraped = await self.server.scrape()
                if scraped is None:
                    await respond(send, 404, NO_SUCH_ENDPOINT)
                else:
                    await respond(send, 200, scraped[0], scraped[1].encode())
                return
        await self.app(scope, receive, send)
