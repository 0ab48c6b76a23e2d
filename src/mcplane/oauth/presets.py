"""Presets for well-known identity providers: each fills the issuer, scopes and claim names that
its provider needs, so a configuration names the preset, the tenant and the client only.

=========  ==========================================================  ==============================
preset     issuer (discovery at issuer + /.well-known/openid-...)       needs
=========  ==========================================================  ==============================
oidc       ``issuer`` as configured                                     ``issuer``
google     ``https://accounts.google.com``                              (``tenant`` claim: ``hd``)
entra      ``https://login.microsoftonline.com/{tenant}/v2.0``          ``tenant`` (the directory id)
auth0      ``https://{tenant}/``                                        ``tenant`` (the Auth0 domain)
okta       ``https://{tenant}/oauth2/{authorization_server}``           ``tenant`` (the Okta domain)
keycloak   ``{base_url}/realms/{realm}``                                ``base_url`` and ``realm``
github     none: plain OAuth, the user from ``GET {api_url}/user``      (``base_url``, ``api_url``)
=========  ==========================================================  ==============================

Anything a preset fills can be set explicitly instead (an explicit ``issuer`` wins, ``claims``
entries override the preset's one by one).
"""

from __future__ import annotations

from typing import Any

__all__ = ["GITHUB_API_URL", "GITHUB_URL", "MULTI_TENANT_NAMES", "apply_preset"]

GITHUB_URL = "https://github.com"
GITHUB_API_URL = "https://api.github.com"
MULTI_TENANT_NAMES = frozenset({"common", "organizations", "consumers"})
"""Entra's multi-tenant endpoints: their ID tokens name each user's own tenant as issuer, which
no single issuer check can accept, so a tenant must be named."""

_CLAIMS: dict[str, dict[str, Any]] = {
    "google": {"tenant": "hd", "roles": None, "groups": None},
    "entra": {"roles": "roles", "groups": "groups", "tenant": "tid"},
    "auth0": {"roles": "roles"},
    "okta": {"groups": "groups"},
    "keycloak": {"roles": "realm_access.roles", "groups": "groups"},
    "github": {"subject": "id", "roles": None, "groups": None, "email": "email"},
}


def _needs(data: dict[str, Any], preset: str, *keys: str) -> None:
    missing = [key for key in keys if not data.get(key)]
    if missing:
        raise ValueError(f"preset {preset!r} needs {', '.join(missing)}")


def _issuer(preset: str, data: dict[str, Any]) -> str | None:
    tenant = str(data.get("tenant") or "").strip().strip("/")
    if preset == "google":
        return "https://accounts.google.com"
    if preset == "entra":
        _needs(data, preset, "tenant")
        if tenant.lower() in MULTI_TENANT_NAMES:
            raise ValueError(f"preset 'entra' needs the directory's tenant id, not {tenant!r}")
        return f"https://login.microsoftonline.com/{tenant}/v2.0"
    if preset == "auth0":
        _needs(data, preset, "tenant")
        return f"https://{tenant}/"
    if preset == "okta":
        _needs(data, preset, "tenant")
        server = str(data.get("authorization_server") or "default")
        return f"https://{tenant}/oauth2/{server}"
    if preset == "keycloak":
        _needs(data, preset, "base_url", "realm")
        return f"{str(data['base_url']).rstrip('/')}/realms/{data['realm']}"
    return None


def apply_preset(data: dict[str, Any]) -> dict[str, Any]:
    """The raw ``login:`` mapping with the preset's defaults filled in (explicit values win)."""
    preset = data.get("preset", "oidc")
    if not isinstance(preset, str) or preset == "oidc":
        return data
    filled = dict(data)
    if preset == "github":
        filled.setdefault("base_url", GITHUB_URL)
        filled.setdefault("api_url", GITHUB_API_URL)
        filled.setdefault("scopes", ["read:user", "user:email"] if data.get("fetch_email") else ["read:user"])
    elif not filled.get("issuer"):
        filled["issuer"] = _issuer(preset, data)
    defaults = _CLAIMS.get(preset)
    if defaults is not None:
        claims = data.get("claims")
        if claims is None or isinstance(claims, dict):
            filled["claims"] = {**defaults, **(claims or {})}  # pyright: ignore[reportUnknownArgumentType]
    return filled
