"""A Plane whose only tool says who called it: ``tests/cli`` serves it with auth on."""

from __future__ import annotations

from mcplane import Context, Plane

plane = Plane("cli-auth")


@plane.tool()
def whoami(ctx: Context) -> str:
    """The authenticated caller's subject."""
    return ctx.principal.subject
