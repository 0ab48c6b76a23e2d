"""Provider claims → :class:`~mcplane.oauth.login.LoginIdentity`, with the allowed-domain and
allowed-group filters.

Values are taken as the provider wrote them (a list, or a space-separated string) and must be
printable strings (:func:`mcplane.auth.claims.safe_label`); a subject may also be a number
(GitHub's user id). Anything else is ``invalid_claims``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from mcplane.auth.claims import claim, safe_label
from mcplane.auth.errors import AuthenticationFailed
from mcplane.oauth.login import LoginFailed, LoginIdentity, UpstreamLoginConfig

__all__ = ["identity_from_claims", "labels"]

MAX_LABELS = 256
"""At most this many roles, groups or scopes are read from one claim."""


def labels(value: Any) -> tuple[str, ...]:
    """A list of names, or one string of space-separated names; ``()`` when absent."""
    if value is None:
        return ()
    if isinstance(value, str):
        items: list[Any] = value.split()
    elif isinstance(value, list | tuple):
        items = list(value)  # pyright: ignore[reportUnknownArgumentType]
    else:
        raise LoginFailed("invalid_claims", "a role, group or scope claim is neither a list nor a string")
    if len(items) > MAX_LABELS:
        raise LoginFailed("invalid_claims", "a role, group or scope claim holds too many values")
    try:
        return tuple(dict.fromkeys(safe_label(item) for item in items))
    except AuthenticationFailed:
        raise LoginFailed("invalid_claims", "a role, group or scope claim holds a malformed value") from None


def _optional(claims: Mapping[str, Any], name: str | None) -> Any:
    return None if name is None else claim(claims, name)


def _subject(claims: Mapping[str, Any], name: str, prefix: str) -> str:
    value = claim(claims, name)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    try:
        return prefix + safe_label(value)
    except AuthenticationFailed:
        raise LoginFailed("invalid_claims", f"the provider gave no usable subject (claim {name!r})") from None


def _check_domain(config: UpstreamLoginConfig, claims: Mapping[str, Any]) -> None:
    if not config.allowed_domains:
        return
    email = claim(claims, config.claims.email)
    verified = claims.get("email_verified") is True
    domain = email.rpartition("@")[2].lower() if isinstance(email, str) and "@" in email else None
    if not verified or domain not in {allowed.lower() for allowed in config.allowed_domains}:
        raise LoginFailed("not_allowed", "this account's verified email is not in an allowed domain")


def identity_from_claims(config: UpstreamLoginConfig, claims: Mapping[str, Any]) -> LoginIdentity:
    """The identity the verified ``claims`` make, or :class:`LoginFailed` (``invalid_claims``,
    ``not_allowed``)."""
    mapping = config.claims
    subject = _subject(claims, mapping.subject, config.subject_prefix)
    provider_roles = labels(_optional(claims, mapping.roles))
    groups = labels(_optional(claims, mapping.groups))
    _check_domain(config, claims)
    if config.allowed_groups and not set(config.allowed_groups) & {*provider_roles, *groups}:
        raise LoginFailed("not_allowed", "this account is in none of the allowed groups")
    roles = dict.fromkeys(provider_roles)
    for name in (*provider_roles, *groups):
        roles.update(dict.fromkeys(config.role_map.get(name, ())))
    tenant_value = _optional(claims, mapping.tenant)
    try:
        tenant = None if tenant_value is None else safe_label(tenant_value)
    except AuthenticationFailed:
        raise LoginFailed("invalid_claims", "the tenant claim is malformed") from None
    return LoginIdentity(
        subject=subject,
        claims=MappingProxyType(dict(claims)),
        roles=tuple(roles),
        scopes=labels(_optional(claims, mapping.scopes)),
        tenant=tenant,
    )
