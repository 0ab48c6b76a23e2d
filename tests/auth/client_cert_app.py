"""The Plane the client-certificate tests call: ``mcplane run tests/auth/client_cert_app.py``."""

from __future__ import annotations

from typing import Any

from mcplane import Context, Plane

plane = Plane("client-cert-tests")


@plane.tool()
def whoami(ctx: Context) -> dict[str, Any]:
    """Who the server thinks is calling."""
    principal = ctx.principal
    return {
        "subject": principal.subject,
        "roles": sorted(principal.roles),
        "auth": principal.claims.get("auth"),
        "serial": principal.claims.get("serial"),
    }


@plane.tool(roles=["deployer"])
def deploy(service: str) -> str:
    """Only a deployer may call this."""
    return f"deployed {service}"
