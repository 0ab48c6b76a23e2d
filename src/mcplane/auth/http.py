"""Authentication for the HTTP tier, as a pure ASGI wrapper.

``AuthASGI(app, authenticator, config, mcp_path="/mcp")``:

* requests to ``mcp_path`` (HTTP and WebSocket) are authenticated before they reach ``app``
  (by their credential headers and, with ``client_certificate`` configured, the connection's
  verified TLS client certificate from the ASGI TLS extension);
  the principal goes into ``scope["mcplane.principal"]`` and the :data:`current_principal`
  context variable, and, for a real principal, ``scope["user"]``/``scope["auth"]`` in the
  SDK's own form, so its session manager binds each session to the credential that opened it;
* a refused HTTP request gets **401** with a JSON-RPC error body (``data.code`` =
  ``unauthenticated``, ``data.details.reason`` = the reason code) and
  ``WWW-Authenticate: Bearer resource_metadata="<metadata URL>"``, plus
  ``error="invalid_token"`` when a credential was presented (RFC 6750 §3.1: a request with no
  credential gets no error code), as MCP clients expect to start OAuth discovery;
* a refused WebSocket handshake is closed with 1008 (policy violation) before ``accept``;
* ``GET /.well-known/oauth-protected-resource`` and its path-suffixed form
  (``.../oauth-protected-resource/mcp``) serve RFC 9728 protected resource metadata;
* everything else (health, readiness, metrics, CORS preflight) passes through untouched.

Put it behind the Host/Origin check: when ``resource`` is not configured, the resource URL is
derived from the request's ``Host`` header.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import orjson
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from starlette.authentication import AuthCredentials
from starlette.types import ASGIApp, Receive, Scope, Send

from mcplane.auth.authenticator import Authenticator
from mcplane.auth.certificates import peer_certificate_pem
from mcplane.auth.config import AuthConfig
from mcplane.auth.errors import AuthenticationFailed
from mcplane.auth.middleware import SCOPE_KEY, current_principal
from mcplane.context import Principal
from mcplane.errors import MCPlaneError, Unauthenticated
from mcplane.jsonrpc import mcplane_error_envelope
from mcplane.transports.refusals import peer_of

__all__ = ["METADATA_PATH", "AuthASGI", "metadata_url", "protected_resource_metadata"]

METADATA_PATH = "/.well-known/oauth-protected-resource"
WS_CLOSE_POLICY = 1008
_IDENTITY_CACHE_SIZE = 1024


def metadata_url(resource: str) -> str:
    """RFC 9728 §3.1: the well-known segment goes between the host and the resource's path."""
    parts = urlsplit(resource)
    return f"{parts.scheme}://{parts.netloc}{METADATA_PATH}{parts.path.rstrip('/')}"


def protected_resource_metadata(config: AuthConfig, resource: str) -> dict[str, Any]:
    body: dict[str, Any] = {"resource": resource}
    if config.authorization_servers:
        body["authorization_servers"] = list(config.authorization_servers)
    if config.scopes_supported:
        body["scopes_supported"] = list(config.scopes_supported)
    body["bearer_methods_supported"] = ["header"]
    return body


class AuthASGI:
    def __init__(
        self,
        app: ASGIApp,
        authenticator: Authenticator,
        config: AuthConfig | None = None,
        *,
        mcp_path: str = "/mcp",
        on_refused: Callable[[int, str, str], None] | None = None,
    ) -> None:
        self.app = app
        self.on_refused = on_refused
        """Told ``(status, reason, peer)`` of every refusal (metrics and the sampled log)."""
        self.authenticator = authenticator
        self.config = config or authenticator.config
        self.mcp_path = "/" + mcp_path.strip("/")
        paths = {METADATA_PATH, METADATA_PATH + self.mcp_path}
        if self.config.resource is not None:
            paths.add(METADATA_PATH + urlsplit(self.config.resource).path.rstrip("/"))
        self.metadata_paths = frozenset(paths)
        self._credential_names = _wanted_headers(self.config)
        self._by_header = authenticator.certificates is None and not any(
            (config.api_key_header or "").lower() == "authorization" for config in (self.config, authenticator.config)
        )
        """Whether a request whose one credential is ``Authorization`` is decided by that header's
        bytes alone (no client certificate configured, and the API-key header is another one)."""
        self._identities: dict[int, tuple[Principal, AuthenticatedUser, AuthCredentials]] = {}
        """The SDK's view (``scope["user"]``/``["auth"]``) of recent principals, which repeat: the
        authenticator hands out the same (immutable) principal for a token it has verified."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if kind == "http" and path in self.metadata_paths:
            await self._metadata(scope, send)
            return
        if path.rstrip("/") != self.mcp_path or scope.get("method") == "OPTIONS":
            await self.app(scope, receive, send)
            return
        try:
            authorization = self._bearer_header(scope) if self._by_header else None
            if authorization is not None:
                principal = await self.authenticator.authenticate_bearer_header(authorization)
            else:
                certificate = peer_certificate_pem(scope) if self.authenticator.certificates is not None else None
                principal = await self.authenticator.authenticate(
                    _credential_headers(scope, self._credential_names), certificate=certificate
                )
        except MCPlaneError as error:
            if self.on_refused is not None:
                status = 401 if isinstance(error, Unauthenticated) else (503 if error.retryable else 500)
                self.on_refused(status, _reason(error), peer_of(scope))
            if kind == "websocket":
                await receive()  # websocket.connect: refuse the handshake, never accept
                reason = "unauthenticated" if isinstance(error, Unauthenticated) else error.code
                await send({"type": "websocket.close", "code": WS_CLOSE_POLICY, "reason": reason})
            else:
                await self._refuse(scope, send, error)
            return
        scope = dict(scope)
        scope[SCOPE_KEY] = principal
        if not principal.anonymous:
            scope["user"], scope["auth"] = self._identity(principal)
        token = current_principal.set(principal)
        try:
            await self.app(scope, receive, send)
        finally:
            current_principal.reset(token)

    def _bearer_header(self, scope: Scope) -> bytes | None:
        """The raw ``Authorization`` value when it is the request's one credential header, else ``None``."""
        found: bytes | None = None
        wanted = self._credential_names
        for raw_name, raw_value in scope["headers"]:
            name = raw_name.lower()
            if name in wanted:
                if found is not None or name != b"authorization":
                    return None  # a repeated header, or another credential: decided the whole way
                found = raw_value
        return found

    def _identity(self, principal: Principal) -> tuple[AuthenticatedUser, AuthCredentials]:
        known = self._identities.get(id(principal))
        if known is not None and known[0] is principal:
            return known[1], known[2]
        user, credentials = AuthenticatedUser(_access_token(principal)), AuthCredentials(sorted(principal.scopes))
        if len(self._identities) >= _IDENTITY_CACHE_SIZE:
            del self._identities[next(iter(self._identities))]  # the oldest
        self._identities[id(principal)] = (principal, user, credentials)  # holding it keeps its id unique
        return user, credentials

    def resource(self, scope: Scope) -> str:
        if self.config.resource is not None:
            return self.config.resource
        host = _header(scope, b"host") or "localhost"
        return f"{scope.get('scheme', 'http')}://{host}{self.mcp_path}"

    async def _metadata(self, scope: Scope, send: Send) -> None:
        if scope.get("method") not in ("GET", "HEAD"):
            await _send(send, 405, b"", [(b"allow", b"GET, HEAD")])
            return
        body = orjson.dumps(protected_resource_metadata(self.config, self.resource(scope)))
        headers = [
            (b"content-type", b"application/json"),
            (b"cache-control", b"public, max-age=3600"),
            (b"access-control-allow-origin", b"*"),  # public metadata; browser clients read it cross-origin
        ]
        await _send(send, 200, b"" if scope["method"] == "HEAD" else body, headers, length=len(body))

    async def _refuse(self, scope: Scope, send: Send, error: MCPlaneError) -> None:
        body = orjson.dumps(mcplane_error_envelope(None, error))
        headers = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
        if isinstance(error, Unauthenticated):
            headers.append((b"www-authenticate", self.challenge(scope, error).encode()))
            status = 401
        else:
            status = 503 if error.retryable else 500
        await _send(send, status, body, headers)

    def challenge(self, scope: Scope, error: Unauthenticated) -> str:
        """The ``WWW-Authenticate`` value for a refused request."""
        params = [f'resource_metadata="{metadata_url(self.resource(scope))}"']
        if self.config.scopes_supported:
            params.append(f'scope="{" ".join(self.config.scopes_supported)}"')
        if not (isinstance(error, AuthenticationFailed) and error.reason == "missing_token"):
            params.append('error="invalid_token"')
            params.append(f'error_description="{error.message}"')
        return "Bearer " + ", ".join(params)


def _reason(error: MCPlaneError) -> str:
    """The refusal's reason code (one of a fixed set: ``mcplane.auth.errors.REASONS``), else its code."""
    details = error.details
    reason = details.get("reason") if isinstance(details, Mapping) else None
    return str(reason) if isinstance(reason, str) else error.code


def _wanted_headers(config: AuthConfig) -> frozenset[bytes]:
    """The (lower-case) names of the headers that carry credentials."""
    wanted = {b"authorization"}
    if config.api_key_header:
        wanted.add(config.api_key_header.lower().encode("latin-1"))
    return frozenset(wanted)


def _credential_headers(scope: Scope, wanted: frozenset[bytes]) -> Mapping[str, str]:
    """The request's credential headers; a repeated one is refused (which copy would count?)."""
    found: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.lower()
        if name in wanted:
            key = name.decode("latin-1")
            if key in found:
                raise AuthenticationFailed("invalid_token")
            found[key] = raw_value.decode("latin-1")
    return found


def _header(scope: Scope, name: bytes) -> str | None:
    for raw_name, raw_value in scope["headers"]:
        if raw_name.lower() == name:
            return raw_value.decode("latin-1")
    return None


def _access_token(principal: Principal) -> AccessToken:
    """The SDK's view of the principal: sessions are bound to (client_id, issuer, subject)."""
    claims = dict(principal.claims)
    api_key_id = claims.get("api_key_id")
    client = claims.get("client_id") or claims.get("azp")
    client_id = f"api-key:{api_key_id}" if api_key_id else str(client or principal.subject)
    expires = claims.get("exp")
    return AccessToken(
        token="",
        client_id=client_id,
        scopes=sorted(principal.scopes),
        expires_at=int(expires) if isinstance(expires, int | float) and not isinstance(expires, bool) else None,
        subject=principal.subject,
        claims=claims,
    )


async def _send(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]], *, length: int | None = None
) -> None:
    headers = [*headers, (b"content-length", str(len(body) if length is None else length).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
