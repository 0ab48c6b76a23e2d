"""Verified token claims → :class:`~mcplane.context.Principal`.

Subject from ``sub`` (configurable), roles from a configurable claim (default ``roles``: a
list, or a string that is one role unless ``claims.roles_string: split``), scopes from ``scope``
(space separated, RFC 8693/9068) or ``scp`` (a list or a space-separated string), tenant from a
configurable claim (default ``tenant``).

Names are compared exactly as the issuer wrote them: no case folding and no Unicode
normalisation, so a look-alike (a Cyrillic or fullwidth spelling of ``admin``) never becomes
the role it imitates. Values with control, format (zero-width, bidi override), surrogate or
line-separator characters are refused, so they cannot forge log lines or audit records.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from mcplane.auth.config import ClaimsMapping
from mcplane.auth.errors import AuthenticationFailed
from mcplane.context import Principal

__all__ = ["claim", "principal_from_claims", "safe_label"]

MAX_LABEL_CHARS = 512
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def safe_label(value: Any) -> str:
    """A subject, role, scope or tenant: a non-empty, printable string, or ``invalid_token``."""
    if not isinstance(value, str) or not value or len(value) > MAX_LABEL_CHARS:
        raise AuthenticationFailed("invalid_token")
    if any(unicodedata.category(ch) in _UNSAFE_CATEGORIES for ch in value):
        raise AuthenticationFailed("invalid_token")
    return value


def claim(claims: Mapping[str, Any], name: str) -> Any:
    """A claim by exact name, else by dotted path (``realm_access.roles``); ``None`` when absent."""
    if name in claims:
        return claims[name]
    node: Any = claims
    for part in name.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _labels(value: Any, *, split: bool = True) -> frozenset[str]:
    """A list of strings, or one string: space-separated names (``split``) or a single name."""
    if value is None:
        return frozenset()
    if not isinstance(value, str | list | tuple):
        raise AuthenticationFailed("invalid_token")
    items: Iterable[Any] = (value.split() if split else [value]) if isinstance(value, str) else value
    return frozenset(safe_label(item) for item in items)


def principal_from_claims(claims: Mapping[str, Any], mapping: ClaimsMapping | None = None) -> Principal:
    mapping = mapping or ClaimsMapping()
    subject = safe_label(claim(claims, mapping.subject))
    scope = claims.get("scope")
    scopes = _labels(scope if scope is not None else claims.get("scp"))
    tenant_value = claim(claims, mapping.tenant)
    tenant = None if tenant_value is None else safe_label(tenant_value)
    return Principal(
        subject=subject,
        roles=_labels(claim(claims, mapping.roles), split=mapping.roles_string == "split"),
        scopes=scopes,
        tenant=tenant,
        claims=MappingProxyType(dict(claims)),
    )
