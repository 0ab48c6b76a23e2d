"""Why a credential was refused: one stable reason code per failure, safe to show a client.

:class:`AuthenticationFailed` is an :class:`mcplane.errors.Unauthenticated` (wire code
``unauthenticated``) that also carries a ``reason``; the reason travels in the error's
``details`` so a client can act on it (refresh an ``expired`` token, fix its audience) while
the message stays a fixed, safe sentence. Nothing from the token or the verifier's exception
text ever reaches the client.
"""

from __future__ import annotations

from typing import Literal

from mcplane.errors import Unauthenticated

__all__ = ["REASONS", "AuthenticationFailed", "Reason"]

Reason = Literal[
    "missing_token",
    "invalid_token",
    "expired",
    "not_yet_valid",
    "wrong_audience",
    "wrong_issuer",
    "bad_signature",
    "unknown_key",
    "missing_certificate",
    "invalid_certificate",
]

REASONS: dict[Reason, str] = {
    "missing_token": "authentication required",
    "invalid_token": "the credential is malformed or not acceptable",
    "expired": "the token has expired",
    "not_yet_valid": "the token is not valid yet",
    "wrong_audience": "the token was not issued for this server",
    "wrong_issuer": "the token was issued by an untrusted issuer",
    "bad_signature": "the credential could not be verified",
    "unknown_key": "the token was signed with an unknown key",
    "missing_certificate": "a client certificate is required",
    "invalid_certificate": "the client certificate names no acceptable subject",
}
"""Each reason with its safe message."""


class AuthenticationFailed(Unauthenticated):
    """A refused credential, with a stable reason code (see :data:`REASONS`)."""

    def __init__(self, reason: Reason) -> None:
        super().__init__(REASONS[reason], details={"reason": reason})
        self.reason: Reason = reason

    def __repr__(self) -> str:
        return f"AuthenticationFailed(reason={self.reason!r})"
