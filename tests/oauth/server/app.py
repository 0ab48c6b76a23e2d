"""The plane the authorization-server tests serve: one tool that says who called it."""

from __future__ import annotations

from mcplane import Context, Plane

plane = Plane("oauth-as")


@plane.tool()
def whoami(ctx: Context) -> str:
    """The caller's subject, roles and scopes."""
    principal = ctx.principal
    return f"{principal.subject} roles={sorted(principal.roles)} scopes={sorted(principal.scopes)}"
