"""An upstream that knows its callers only by tokens meant for it: its ``auth`` (given by the test)
verifies JWTs from the test identity provider with this upstream's own audience; ``whoami`` says
who called. Run as ``mcplane run tests/gateway/exchange_app.py --config ...``."""

from __future__ import annotations

from typing import Any

from mcplane import Context, Plane, Unauthenticated

plane = Plane("exchange-upstream", default_timeout=None)


@plane.tool(read_only=True)
def whoami(ctx: Context) -> dict[str, Any]:
    """The verified caller: subject, roles and the token's audience, actor and client."""
    principal = ctx.principal
    if principal.anonymous:
        raise Unauthenticated("this upstream serves authenticated callers only")
    claims = principal.claims
    return {
        "subject": principal.subject,
        "roles": sorted(principal.roles),
        "aud": claims.get("aud"),
        "act": claims.get("act"),
        "client_id": claims.get("client_id"),
    }
