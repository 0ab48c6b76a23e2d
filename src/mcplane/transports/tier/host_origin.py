"""The Host/Origin check (DNS-rebinding protection), for HTTP requests and WebSocket handshakes.

It runs before authentication: a page a browser loaded from elsewhere must not get as far as
having its credentials looked at, and the auth layer derives the resource URL from ``Host``.
Duplicates are refused, never resolved (one parser's first is another's last: RFC 9112 §3.2
answers 400 to two Hosts). Every refusal is counted (``mcplane_http_refusals_total``).
The policy's verdict is remembered per (Host, Origin) pair, for a bounded number of pairs.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from mcplane.errors import Forbidden, InvalidRequest
from mcplane.transports.refusals import peer_of
from mcplane.transports.security import HostOriginPolicy
from mcplane.transports.tier.answers import refusal, refuse_websocket, respond
from mcplane.transports.tier.headers import headers_of

__all__ = ["HostOrigin"]

VERDICTS_KEPT = 256
"""(Host, Origin) pairs whose verdict is remembered; past that the memory starts over (values
come from clients: never an unbounded cache)."""


class HostOrigin:
    def __init__(self, app: ASGIApp, policy: HostOriginPolicy, on_refused: Callable[[int, str, str], None]) -> None:
        self.app = app
        self.policy = policy
        self.on_refused = on_refused
        """Told ``(status, reason, peer)`` of every refusal."""
        self._verdicts: dict[tuple[str | None, str | None], tuple[int, str] | None] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            # Some HTTP parsers keep trailing blanks in header values; RFC 9110 says they are not part of it.
            scope["headers"] = [(k, v.strip(b" \t")) for k, v in scope["headers"]]
        elif kind != "websocket":
            await self.app(scope, receive, send)
            return
        rejection = self.check(scope)
        if rejection is None:
            await self.app(scope, receive, send)
        elif kind == "websocket":
            await refuse_websocket(receive, send, rejection[1])
        else:
            status, reason = rejection
            await respond(send, status, refusal(InvalidRequest(reason) if status == 400 else Forbidden(reason)))

    def check(self, scope: Scope) -> tuple[int, str] | None:
        """``None`` when allowed, else ``(status, reason)``; a refusal is counted."""
        headers = headers_of(scope)
        if len(headers) < len(scope["headers"]):
            for name in (b"host", b"origin"):
                if sum(1 for key, _ in scope["headers"] if key == name) > 1:
                    self.on_refused(400, f"duplicate_{name.decode()}", peer_of(scope))
                    return 400, f"duplicate {name.decode()} header"
        pair = (headers.get("host"), headers.get("origin"))
        try:
            rejection = self._verdicts[pair]
        except KeyError:
            rejection = self.policy.check(*pair)
            if len(self._verdicts) >= VERDICTS_KEPT:
                self._verdicts.clear()
            self._verdicts[pair] = rejection
        if rejection is not None:
            self.on_refused(rejection[0], rejection[1].replace(" ", "_"), peer_of(scope))
        return rejection
