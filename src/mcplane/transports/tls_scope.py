"""The ASGI TLS extension for connections uvicorn serves: who is on the other end of the TLS.

uvicorn puts no TLS details into the ASGI scope, so a client certificate verified in the
handshake would never reach the application. :func:`tls_protocols` gives uvicorn protocol
classes (its own HTTP and WebSocket implementations, subclassed) that, once a TLS connection is
made, read the peer certificate from the transport's ``ssl_object`` and add to the scope of
every request and WebSocket session on that connection::

    scope["extensions"]["tls"] = {
        "server_cert": None,
        "client_cert_chain": ["-----BEGIN CERTIFICATE-----..."],   # the verified peer's, or []
        "client_cert_name": "CN=agent-1",                           # RFC 4514, or None
        "client_cert_error": None,
        "tls_version": 0x0304,
    }

as the ASGI TLS extension specifies (Python's ``ssl`` exposes only the peer's own certificate,
so the chain holds that one; :func:`mcplane.auth.certificates.peer_certificate_pem` reads it).
The certificate is read once per connection, not per request;
a WebSocket upgrade hands the same transport to the WebSocket protocol, which reads it again.
Only a certificate that passed verification is there: a server context that asks for client
certificates refuses the handshake of any other.
"""

from __future__ import annotations

import functools
import ssl
from typing import Any, cast

from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.config import HTTP_PROTOCOLS, WS_PROTOCOLS
from uvicorn.importer import import_from_string

__all__ = ["EXTENSION", "tls_extension", "tls_protocols"]

EXTENSION = "tls"

_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


def tls_extension(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> dict[str, Any]:
    """The ASGI TLS extension's dict for one TLS connection."""
    der = ssl_object.getpeercert(binary_form=True)
    chain: list[str] = []
    name: str | None = None
    if der:
        chain.append(ssl.DER_cert_to_PEM_cert(der))
        from cryptography import x509

        name = x509.load_der_x509_certificate(der).subject.rfc4514_string()
    return {
        "server_cert": None,
        "client_cert_chain": chain,
        "client_cert_name": name,
        "client_cert_error": None,
        "tls_version": _VERSIONS.get(ssl_object.version() or ""),
    }


def _with_tls(app: ASGIApp, tls: dict[str, Any]) -> ASGIApp:
    async def app_with_tls(scope: Scope, receive: Receive, send: Send) -> None:
        extensions = scope.get("extensions")
        if isinstance(extensions, dict):
            cast("dict[str, Any]", extensions)[EXTENSION] = tls  # a fresh dict per scope, made by uvicorn
        else:
            scope["extensions"] = {EXTENSION: tls}
        await app(scope, receive, send)

    return app_with_tls


class _TLSScope:
    """Mixed in before a uvicorn protocol class: wraps its app once the connection is made."""

    app: ASGIApp

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            self.app = _with_tls(self.app, tls_extension(ssl_object))


@functools.cache
def _subclass(base: type[Any]) -> type[Any]:
    return type(f"TLS{base.__name__}", (_TLSScope, base), {"__module__": __name__})


def tls_protocols(http: str | type[Any], ws: str | type[Any] = "auto") -> tuple[type[Any], type[Any]]:
    """uvicorn ``http=`` and ``ws=`` protocol classes (names as uvicorn's ``Config`` takes them)
    whose requests carry the TLS extension."""
    http_class = import_from_string(HTTP_PROTOCOLS.get(http, http)) if isinstance(http, str) else http
    ws_name = WS_PROTOCOLS.get(ws, ws) if isinstance(ws, str) else ws
    if ws_name is None:
        raise ValueError("the TLS extension needs a WebSocket protocol (ws='none' given)")
    ws_class = import_from_string(ws_name) if isinstance(ws_name, str) else ws_name
    return _subclass(http_class), _subclass(ws_class)
