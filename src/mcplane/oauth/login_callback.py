"""The two ends of the browser's trip to the provider: the authorization request (state, PKCE
S256, nonce) and the redirect back (bounded, error, state, RFC 9207 ``iss``, code)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Mapping
from urllib.parse import urlencode

from mcplane.oauth.login import LoginFailed

__all__ = [
    "MAX_QUERY_KEYS",
    "MAX_QUERY_VALUE",
    "authorization_url",
    "callback_code",
    "new_secrets",
    "s256",
    "safe_error",
]

logger = logging.getLogger("mcplane.oauth")

MAX_QUERY_KEYS = 32
MAX_QUERY_VALUE = 4096
_ERROR_CODE = re.compile(r"^[a-z0-9_.\-]{1,64}$")


def s256(verifier: str) -> str:
    """The PKCE S256 challenge of ``verifier`` (RFC 7636 §4.2)."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode("ascii")


def authorization_url(endpoint: str, params: Mapping[str, str]) -> str:
    return f"{endpoint}{'&' if '?' in endpoint else '?'}{urlencode(params)}"


def new_secrets() -> tuple[str, str]:
    """A fresh PKCE code verifier (86 characters) and nonce."""
    return secrets.token_urlsafe(64), secrets.token_urlsafe(32)


def safe_error(value: object) -> str:
    """An OAuth error code as the provider sent it if it looks like one, else ``invalid``: it goes
    into a message and a log line, so nothing else from the provider does."""
    return value if isinstance(value, str) and _ERROR_CODE.match(value) else "invalid"


def callback_code(query: Mapping[str, str], saved: Mapping[str, str], *, issuer: str | None, iss_required: bool) -> str:
    """The authorization code from the provider's redirect back, after every check."""
    if len(query) > MAX_QUERY_KEYS or any(len(str(value)) > MAX_QUERY_VALUE for value in query.values()):
        raise LoginFailed("invalid_response", "the provider's redirect is too large")
    expected_state = saved.get("state", "")
    if not expected_state or not hmac.compare_digest(str(query.get("state", "")), expected_state):
        raise LoginFailed("state_mismatch", "the provider's redirect does not match this login (state)")
    iss = query.get("iss")
    if issuer is not None and (iss is not None or iss_required) and iss != issuer:
        raise LoginFailed("issuer_mismatch", "the redirect names another issuer (RFC 9207)")
    error = query.get("error")
    if error is not None:
        code = safe_error(error)
        logger.info("identity provider refused the login: %s", code)
        raise LoginFailed("provider_error", f"the identity provider refused the login ({code})")
    code = query.get("code")
    if not code:
        raise LoginFailed("invalid_response", "the provider's redirect carries no code")
    return code
