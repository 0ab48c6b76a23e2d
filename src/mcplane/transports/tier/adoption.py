"""Session adoption: a 2025-11-25 request naming a session another replica opened is served here.

Session ids are sealed (:mod:`mcplane.transports.sealing`), so any replica can check one and take
the session over (:meth:`~mcplane.transports.sessions.SessionManager.adopt`) before the SDK looks
it up. When the check cannot be made now (the revocation list is unreachable) or this replica is
full, the client gets 503 with ``Retry-After``, as JSON-RPC, instead of the SDK's 404.
It runs behind authentication: the adopted session is bound to the credential that presents it.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from mcplane.errors import DependencyUnavailable
from mcplane.sdk_adapter.sessions import open_sessions
from mcplane.transports.sessions import SessionManager, requestor
from mcplane.transports.tier.answers import refusal, respond
from mcplane.transports.tier.headers import headers_of

__all__ = ["SessionAdoption"]

RETRY_SOON = ((b"retry-after", b"1"),)
UNCHECKABLE = refusal(DependencyUnavailable("cannot check the session now"))
FULL = refusal(DependencyUnavailable("too many open sessions"))


class SessionAdoption:
    def __init__(self, app: ASGIApp, manager: SessionManager) -> None:
        self.app = app
        self.manager = manager

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            manager = self.manager
            session_id = headers_of(scope).get("mcp-session-id")
            if session_id is not None and session_id not in open_sessions(manager):
                adoption = await manager.adopt(session_id, requestor(scope))
                if adoption in ("unavailable", "full"):
                    await respond(
                        send, 503, UNCHECKABLE if adoption == "unavailable" else FULL, extra_headers=RETRY_SOON
                    )
                    return
        await self.app(scope, receive, send)
