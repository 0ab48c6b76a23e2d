"""The verified TLS client certificate as a credential (mTLS).

The TLS layer has already done the hard part: with ``--tls-client-ca`` the handshake refuses a
certificate that is not signed by that CA, has expired, or is revoked by ``--tls-crl``. What
reaches this module is a certificate that passed, read from the request's ASGI TLS extension
(``scope["extensions"]["tls"]["client_cert_chain"][0]``, which
:mod:`mcplane.transports.tls_scope` fills in for connections uvicorn serves).

.. code-block:: yaml

    auth:
      client_certificate:
        required: true               # no verified certificate: missing_certificate
        principal_from: san_uri      # subject_cn (default) | san_dns | san_uri | san_email
        roles: {"spiffe://example.org/agent/billing": [billing], "*": [agent]}

The subject is the chosen name (a certificate without one is refused: ``invalid_certificate``);
roles and scopes come from the maps (``"*"`` applies to every certificate); ``claims`` keep the
certificate's details (``cn``, ``san_*``, ``issuer``, ``serial``, ``fingerprint_sha256``) and
``auth: "mtls"``. A certificate is turned into a principal once and remembered.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, cast

from mcplane.auth.claims import safe_label
from mcplane.auth.config import ClientCertificateAuth
from mcplane.auth.errors import AuthenticationFailed
from mcplane.context import Principal

__all__ = ["CertificateAuthenticator", "peer_certificate_pem"]

_CACHE_SIZE = 1024
_CLAIM = {"san_dns": "san_dns", "san_uri": "san_uri", "san_email": "san_email"}


def peer_certificate_pem(scope: Mapping[str, Any]) -> str | None:
    """The verified client certificate of the connection a request came on (PEM), if any."""
    extensions = scope.get("extensions")
    if not isinstance(extensions, dict):
        return None
    tls = cast("dict[str, Any]", extensions).get("tls")
    if not isinstance(tls, dict):
        return None
    chain = cast("dict[str, Any]", tls).get("client_cert_chain")
    if isinstance(chain, list | tuple) and chain and isinstance(chain[0], str):
        return chain[0]
    return None


class CertificateAuthenticator:
    """A verified client certificate (PEM) → :class:`~mcplane.context.Principal`."""

    def __init__(self, config: ClientCertificateAuth) -> None:
        self.config = config
        self._known: dict[str, Principal] = {}

    def principal(self, pem: str) -> Principal:
        known = self._known.get(pem)
        if known is not None:
            return known
        principal = self._map(pem)
        if len(self._known) >= _CACHE_SIZE:
            del self._known[next(iter(self._known))]  # the oldest
        self._known[pem] = principal
        return principal

    def _map(self, pem: str) -> Principal:
        from mcplane.tls import principal_from_certificate

        try:
            described = principal_from_certificate(ssl.PEM_cert_to_DER_cert(pem))
        except ValueError:
            raise AuthenticationFailed("invalid_certificate") from None
        claims = described.claims
        how = self.config.principal_from
        if how == "subject_cn":
            name = claims.get("cn")
        else:
            names = claims.get(_CLAIM[how]) or []
            name = names[0] if names else None
        if name is None:
            raise AuthenticationFailed("invalid_certificate")
        try:
            subject = safe_label(name)
        except AuthenticationFailed:
            raise AuthenticationFailed("invalid_certificate") from None
        return Principal(
            subject=subject,
            roles=frozenset(self._lookup(self.config.roles, subject)),
            scopes=frozenset(self._lookup(self.config.scopes, subject)),
            claims=MappingProxyType(dict(claims)),
        )

    @staticmethod
    def _lookup(table: Mapping[str, list[str]], subject: str) -> list[str]:
        return [*table.get(subject, ()), *table.get("*", ())]
