"""The authorization server's endpoints, as plain ASGI callables by path.

::

    GET  /.well-known/oauth-authorization-server   RFC 8414 metadata
    GET  /oauth/authorize     checks the client, redirect URI, PKCE (S256), scope, resource; shows consent
    POST /oauth/consent       the person's answer (CSRF token + this browser's cookie) → the identity provider
    GET  /oauth/callback      the identity provider's answer → a one-time code → the client's redirect URI (+ iss)
    POST /oauth/token         authorization_code (+ PKCE verifier) and refresh_token (rotated) grants
    POST /oauth/revoke        RFC 7009: a refresh or access token revokes its whole grant
    POST /oauth/register      RFC 7591 dynamic registration
    GET  /oauth/jwks          the public keys of the access tokens

Errors a client can act on are answered as the RFCs say: redirected to a *verified* redirect
URI (``error``, ``state``, ``iss``), or a JSON ``{"error": ...}`` from the token, revocation and
registration endpoints. An unknown client or a redirect URI that is not registered is never
redirected to: the person sees an error page. Nothing here logs a code, a token or a secret.

A grant is a *family*: the code's redemption creates it, every refresh token of it names it.
Revoking a token, replaying a code, or presenting a refresh token that was already rotated
(reuse: someone holds a copy) deletes the family, so none of its refresh tokens works again;
its access tokens live out their short lifetime.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import orjson
from starlette.types import Receive, Scope, Send

from mcplane.errors import MCPlaneError
from mcplane.oauth.clients import Client, ClientError, Clients
from mcplane.oauth.config import ENDPOINTS, OAuthServerConfig
from mcplane.oauth.login import LoginFailed, UpstreamLogin
from mcplane.oauth.pages import PAGE_HEADERS, consent_page, error_page
from mcplane.oauth.signing import IssuerKeys
from mcplane.oauth.store import OAuthStore, digest

__all__ = ["AuthorizationServer", "OAuthError"]

logger = logging.getLogger("mcplane.oauth")

Route = Callable[[Scope, Receive, Send], Awaitable[None]]
MAX_FORM_BYTES = 16_384
MAX_PARAM_CHARS = 2048
MAX_FIELDS = 64
COOKIE = "mcplane_oauth"
_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")  # fullmatch: ``$`` would let a trailing newline in
_CHALLENGE = re.compile(r"[A-Za-z0-9\-_]{43}")
_JSON = (b"content-type", b"application/json")
_NO_STORE = [(b"cache-control", b"no-store"), (b"pragma", b"no-cache")]
_CORS = [(b"access-control-allow-origin", b"*")]


class OAuthError(Exception):
    """An RFC 6749 error: ``error`` code, safe ``description``, HTTP ``status`` (``allow``: the
    methods a 405 names)."""

    def __init__(self, error: str, description: str, status: int = 400, *, allow: str | None = None) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status
        self.allow = allow


def _method(scope: Scope, *allowed: str) -> None:
    """405 (with ``Allow``) unless the request's method is one of ``allowed``."""
    if scope.get("method") not in allowed:
        raise OAuthError("invalid_request", f"use {' or '.join(allowed)}", 405, allow=", ".join(allowed))


async def _read_form(scope: Scope, receive: Receive) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (RFC 6749 §4.1.3): capped, each parameter once."""
    media = (_header(scope, b"content-type") or "").split(";", 1)[0].strip().lower()
    if media != "application/x-www-form-urlencoded":
        raise OAuthError("invalid_request", "send the parameters as application/x-www-form-urlencoded")
    body = await _read_body(receive, MAX_FORM_BYTES)
    return _single(_fields(body.decode("utf-8", "replace")))


def _same(a: str, b: str) -> bool:
    """A constant-time comparison of two strings of any characters."""
    return hmac.compare_digest(a.encode("utf-8", "replace"), b.encode("utf-8", "replace"))


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def _with_params(uri: str, params: Mapping[str, str | None]) -> str:
    query = urlencode({key: value for key, value in params.items() if value is not None})
    return f"{uri}{'&' if urlsplit(uri).query else '?'}{query}"


def _single(pairs: Sequence[tuple[str, str]]) -> dict[str, str]:
    """RFC 6749 §3.1/§3.2: a parameter sent twice is an error; values are capped."""
    found: dict[str, str] = {}
    for key, value in pairs:
        if key in found:
            raise OAuthError("invalid_request", f"parameter {key!r} is repeated")
        if len(value) > MAX_PARAM_CHARS:
            raise OAuthError("invalid_request", f"parameter {key!r} is too long")
        found[key] = value
    return found


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _cookie(scope: Scope, name: str) -> str | None:
    raw = _header(scope, b"cookie")
    if raw is None:
        return None
    for part in raw.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name and value:
            return value
    return None


def _fields(text: str, *, keep_blank_values: bool = False) -> list[tuple[str, str]]:
    try:
        return parse_qsl(text, keep_blank_values=keep_blank_values, max_num_fields=MAX_FIELDS)
    except ValueError:  # more fields than any request of this server has
        raise OAuthError("invalid_request", "too many parameters") from None


def _query(scope: Scope) -> list[tuple[str, str]]:
    return _fields(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)


async def _read_body(receive: Receive, limit: int) -> bytes:
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise OAuthError("invalid_request", "the request was not completed")
        body += message.get("body", b"")
        if len(body) > limit:
            raise OAuthError("invalid_request", "the request body is too large", 413)
        if not message.get("more_body", False):
            return bytes(body)


async def _send(send: Send, status: int, body: bytes, headers: Sequence[tuple[bytes, bytes]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _json(send: Send, status: int, body: Any, extra: Sequence[tuple[bytes, bytes]] = ()) -> None:
    await _send(send, status, orjson.dumps(body), [_JSON, *_NO_STORE, *_CORS, *extra])


async def _redirect(send: Send, location: str, extra: Sequence[tuple[bytes, bytes]] = ()) -> None:
    await _send(send, 303, b"", [(b"location", location.encode()), *_NO_STORE, *extra])


class AuthorizationServer:
    def __init__(
        self,
        config: OAuthServerConfig,
        *,
        resource: str,
        scopes_supported: Sequence[str],
        store: OAuthStore,
        keys: IssuerKeys,
        clients: Clients,
        login: UpstreamLogin,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.resource = resource
        self.scopes_supported = tuple(scopes_supported)
        self.store = store
        self.keys = keys
        self.clients = clients
        self.login = login
        self._clock = clock
        issuer = urlsplit(config.issuer)
        self._base_path = issuer.path.rstrip("/")
        self._origin = f"{issuer.scheme}://{issuer.netloc}"
        self._secure = issuer.scheme == "https"

    # ---------------------------------------------------------------------------------- wiring
    def path(self, name: str) -> str:
        return self._base_path + ENDPOINTS[name]

    def routes(self) -> dict[str, Route]:
        """Every endpoint by exact path (served by the HTTP tier's provider routes)."""
        handlers: dict[str, Callable[[Scope, Receive, Send], Awaitable[None]]] = {
            "authorize": self.authorize,
            "consent": self.consent,
            "callback": self.callback,
            "token": self.token,
            "revoke": self.revoke,
            "jwks": self.jwks,
        }
        if self.config.registration.dynamic:
            handlers["register"] = self.register
        routes: dict[str, Route] = {self.path(name): self._guarded(handler) for name, handler in handlers.items()}
        metadata = self._guarded(self.metadata)
        routes["/.well-known/oauth-authorization-server" + self._base_path] = metadata
        return routes

    def _guarded(self, handler: Route) -> Route:
        async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
            if scope.get("method") == "OPTIONS":
                await _send(
                    send,
                    204,
                    b"",
                    [
                        *_CORS,
                        (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
                        (b"access-control-allow-headers", b"authorization, content-type, mcp-protocol-version"),
                        (b"access-control-max-age", b"600"),
                    ],
                )
                return
            logger.debug("oauth request %s %s", scope.get("method"), scope["path"])  # the path only: never the query
            try:
                await handler(scope, receive, send)
            except OAuthError as error:
                await self._error_json(send, error)
            except MCPlaneError as error:  # a backend that cannot be reached: retry later
                logger.warning("oauth %s: %s", scope.get("path"), error.code)
                await _json(send, 503, {"error": "temporarily_unavailable", "error_description": error.message})
            except Exception:  # a bug: logged for the operator, a stable answer for the caller
                logger.exception("oauth %s: internal error", scope.get("path"))
                await _json(send, 500, {"error": "server_error", "error_description": "internal error"})

        return guarded

    async def _error_json(self, send: Send, error: OAuthError) -> None:
        extra = [(b"www-authenticate", b'Basic realm="oauth"')] if error.status == 401 else []
        if error.allow is not None:
            extra.append((b"allow", error.allow.encode()))
        await _json(send, error.status, {"error": error.error, "error_description": error.description}, extra)

    async def aclose(self) -> None:
        await self.login.aclose()
        await self.clients.fetcher.aclose()

    # ---------------------------------------------------------------------------------- metadata
    def metadata_document(self) -> dict[str, Any]:
        issuer = self.config.issuer
        methods = ["none", "client_secret_basic", "client_secret_post"]
        body: dict[str, Any] = {
            "issuer": issuer,
            "authorization_endpoint": self.config.endpoint("authorize"),
            "token_endpoint": self.config.endpoint("token"),
            "revocation_endpoint": self.config.endpoint("revoke"),
            "jwks_uri": self.config.endpoint("jwks"),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": methods,
            "revocation_endpoint_auth_methods_supported": methods,
            "authorization_response_iss_parameter_supported": True,
            "client_id_metadata_document_supported": self.config.registration.client_id_metadata_documents,
        }
        if self.config.registration.dynamic:
            body["registration_endpoint"] = self.config.endpoint("register")
        if self.scopes_supported:
            body["scopes_supported"] = list(self.scopes_supported)
        return body

    async def metadata(self, scope: Scope, receive: Receive, send: Send) -> None:
        _method(scope, "GET", "HEAD")
        await _send(
            send,
            200,
            orjson.dumps(self.metadata_document()),
            [_JSON, (b"cache-control", b"public, max-age=3600"), *_CORS],
        )

    async def jwks(self, scope: Scope, receive: Receive, send: Send) -> None:
        _method(scope, "GET", "HEAD")
        await _send(
            send, 200, orjson.dumps(self.keys.jwks()), [_JSON, (b"cache-control", b"public, max-age=300"), *_CORS]
        )

    # ---------------------------------------------------------------------------------- authorize
    async def authorize(self, scope: Scope, receive: Receive, send: Send) -> None:
        _method(scope, "GET")
        try:
            params = _single(_query(scope))
        except OAuthError as error:
            await self._page(send, 400, error.error, error.description)
            return
        # Until the client and its redirect URI are known good, errors are shown, never redirected.
        try:
            client = await self.clients.find(params.get("client_id", ""))
        except ClientError as error:
            await self._page(send, 400, error.error, error.description)
            return
        redirect_uri = params.get("redirect_uri")
        if redirect_uri is None and len(client.redirect_uris) == 1:
            redirect_uri = client.redirect_uris[0]
        if redirect_uri is None or redirect_uri not in client.redirect_uris:
            await self._page(send, 400, "invalid_request", "the redirect_uri is not registered for this client")
            return
        state = params.get("state")
        try:
            scopes = self._check_authorization(params)
        except OAuthError as error:
            await self._redirect_error(send, redirect_uri, error, state)
            return
        if await self._over_limit("authorizations", self.config.max_authorizations_per_minute):
            retry = str(60 - int(self._clock()) % 60).encode()
            page = error_page("temporarily_unavailable", "too many sign-ins are starting; try again in a minute")
            await _send(send, 429, page, [*PAGE_HEADERS, (b"retry-after", retry)])
            return
        browser = _cookie(scope, COOKIE) or secrets.token_urlsafe(32)
        request_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        pending = {
            "client_id": client.client_id,
            "redirect_uri": redirect_uri,
            "state": state,
            "challenge": params["code_challenge"],
            "scopes": scopes,
            "resource": params.get("resource") or self.resource,
            "browser": digest(browser),
            "csrf": csrf,
        }
        await self.store.put("request", digest(request_id), pending, self.config.authorization_ttl)
        page = consent_page(
            action=self.path("consent"),
            client_name=client.name,
            client_id=client.client_id,
            redirect_uri=redirect_uri,
            resource=str(pending["resource"]),
            scopes=scopes,
            request_id=request_id,
            csrf=csrf,
        )
        await _send(send, 200, page, [*PAGE_HEADERS, self._set_cookie(browser)])

    def _check_authorization(self, params: Mapping[str, str]) -> list[str]:
        if params.get("response_type") != "code":
            raise OAuthError("unsupported_response_type", "only response_type=code is supported")
        challenge = params.get("code_challenge")
        if not challenge:
            raise OAuthError("invalid_request", "PKCE is required: send code_challenge with method S256")
        if params.get("code_challenge_method") != "S256":
            raise OAuthError("invalid_request", "only code_challenge_method=S256 is supported (plain is refused)")
        if not _CHALLENGE.fullmatch(challenge):
            raise OAuthError("invalid_request", "code_challenge must be a base64url SHA-256 (43 characters)")
        resource = params.get("resource")
        if resource is not None and resource != self.resource:
            raise OAuthError("invalid_target", "this server issues tokens only for its own resource")
        return self._check_scopes(params.get("scope"))

    def _check_scopes(self, scope: str | None) -> list[str]:
        scopes = sorted(set((scope or "").split()))
        if len(scopes) > 64:
            raise OAuthError("invalid_scope", "too many scopes")
        if self.scopes_supported:
            unknown = [name for name in scopes if name not in self.scopes_supported]
            if unknown:
                raise OAuthError("invalid_scope", "a requested scope is not supported")
        return scopes

    def _set_cookie(self, browser: str) -> tuple[bytes, bytes]:
        attributes = f"{COOKIE}={browser}; Path={self._base_path or ''}/oauth/; HttpOnly; SameSite=Lax; Max-Age=3600"
        if self._secure:
            attributes += "; Secure"
        return (b"set-cookie", attributes.encode())

    async def _over_limit(self, counter: str, limit: int | None) -> bool:
        """Counts one more in this minute (all replicas together): over ``limit`` (``None``: never)?"""
        if limit is None:
            return False
        minute = int(self._clock() // 60)
        return await self.store.incr(counter, str(minute), 1, 120.0) > limit

    async def _page(self, send: Send, status: int, error: str, description: str) -> None:
        await _send(send, status, error_page(error, description), PAGE_HEADERS)

    async def _redirect_error(self, send: Send, redirect_uri: str, error: OAuthError, state: str | None) -> None:
        params = {
            "error": error.error,
            "error_description": error.description,
            "state": state,
            "iss": self.config.issuer,
        }
        await _redirect(send, _with_params(redirect_uri, params))

    # ---------------------------------------------------------------------------------- consent
    async def consent(self, scope: Scope, receive: Receive, send: Send) -> None:
        _method(scope, "POST")
        origin = _header(scope, b"origin")
        if origin is not None and origin != "null" and origin.rstrip("/") != self._origin:
            await self._page(send, 403, "access_denied", "the form was sent from another site")
            return
        try:
            form = _single(_fields((await _read_body(receive, MAX_FORM_BYTES)).decode("utf-8", "replace")))
        except OAuthError as error:  # a browser endpoint: a page, not JSON
            await self._page(send, error.status, error.error, error.description)
            return
        browser = _cookie(scope, COOKIE)
        request_id = form.get("request", "")
        pending = await self.store.take("request", digest(request_id)) if request_id and browser else None
        if (
            pending is None
            or browser is None
            or not hmac.compare_digest(str(pending["browser"]), digest(browser))
            or not _same(str(pending["csrf"]), form.get("csrf", ""))
        ):
            await self._page(
                send, 400, "invalid_request", "this sign-in request expired, was already answered, or is not yours"
            )
            return
        if form.get("decision") != "allow":
            error = OAuthError("access_denied", "the user denied the request")
            await self._redirect_error(send, str(pending["redirect_uri"]), error, pending.get("state"))
            return
        login_state = secrets.token_urlsafe(32)
        start = await self.login.begin(state=login_state, redirect_uri=self.config.endpoint("callback"))
        pending["saved"] = dict(start.saved)
        await self.store.put("login", digest(login_state), pending, self.config.authorization_ttl)
        await _redirect(send, start.url)

    # ---------------------------------------------------------------------------------- callback
    async def callback(self, scope: Scope, receive: Receive, send: Send) -> None:
        _method(scope, "GET")
        try:
            query = _single(_query(scope))
        except OAuthError as error:
            await self._page(send, 400, error.error, error.description)
            return
        login_state = query.get("state", "")
        browser = _cookie(scope, COOKIE)
        pending = await self.store.take("login", digest(login_state)) if login_state else None
        if pending is None or browser is None or not hmac.compare_digest(str(pending["browser"]), digest(browser)):
            await self._page(
                send, 400, "invalid_request", "this sign-in expired, was already completed, or is not yours"
            )
            return
        redirect_uri, state = str(pending["redirect_uri"]), pending.get("state")
        try:
            identity = await self.login.complete(
                query=query, saved=pending.get("saved") or {}, redirect_uri=self.config.endpoint("callback")
            )
        except LoginFailed as failed:
            logger.info("oauth login failed: %s", failed.message)
            await self._redirect_error(send, redirect_uri, OAuthError("access_denied", "the sign-in failed"), state)
            return
        scopes: list[str] = list(pending["scopes"])
        if self.config.login.claims.scopes is not None:  # the provider says which scopes the user may have
            scopes = [scope for scope in scopes if scope in identity.scopes]
        code = secrets.token_urlsafe(32)
        grant = {
            "client_id": pending["client_id"],
            "redirect_uri": redirect_uri,
            "challenge": pending["challenge"],
            "scopes": scopes,
            "resource": pending["resource"],
            "sub": identity.subject,
            "roles": list(identity.roles),
            "tenant": identity.tenant,
        }
        await self.store.put("code", digest(code), grant, self.config.code_ttl)
        logger.info("oauth authorization granted to client %s for subject %s", pending["client_id"], identity.subject)
        await _redirect(send, _with_params(redirect_uri, {"code": code, "state": state, "iss": self.config.issuer}))

    # ---------------------------------------------------------------------------------- token
    async def _client_of(self, scope: Scope, form: Mapping[str, str]) -> Client:
        """RFC 6749 §2.3: the client and its authentication (Basic, form secret, or none)."""
        authorization = _header(scope, b"authorization")
        client_id, secret, method = form.get("client_id"), form.get("client_secret"), "none"
        if authorization is not None:
            kind, _, value = authorization.partition(" ")
            if kind.lower() != "basic":
                raise OAuthError("invalid_client", "client authentication failed", 401)
            try:
                decoded = base64.b64decode(value.strip(), validate=True).decode()
            except ValueError:  # not base64 (binascii.Error), not ASCII, not UTF-8 (UnicodeDecodeError)
                raise OAuthError("invalid_client", "client authentication failed", 401) from None
            basic_id, _, basic_secret = decoded.partition(":")
            basic_id, basic_secret = unquote(basic_id), unquote(basic_secret)
            if (client_id is not None and client_id != basic_id) or secret is not None:
                raise OAuthError("invalid_request", "use one client authentication method")
            client_id, secret, method = basic_id, basic_secret, "client_secret_basic"
        elif secret is not None:
            method = "client_secret_post"
        if not client_id:
            raise OAuthError("invalid_client", "client authentication failed", 401)
        try:
            client = await self.clients.find(client_id)
        except ClientError:
            raise OAuthError("invalid_client", "client authentication failed", 401) from None
        if client.auth_method != method or not client.secret_matches(secret):
            raise OAuthError("invalid_client", "client authentication failed", 401)
        return client

    async def token(self, scope: Scope, receive: Receive, send: Send) -> None:
        _method(scope, "POST")
        form = await _read_form(scope, receive)
        client = await self._client_of(scope, form)
        grant_type = form.get("grant_type")
        if not grant_type:
            raise OAuthError("invalid_request", "send grant_type")
        if grant_type == "authorization_code":
            answer = await self._redeem_code(client, form)
        elif grant_type == "refresh_token":
            answer = await self._refresh(client, form)
        else:
            raise OAuthError("unsupported_grant_type", "use authorization_code or refresh_token")
        await _json(send, 200, answer)

    async def _redeem_code(self, client: Client, form: Mapping[str, str]) -> dict[str, Any]:
        code = form.get("code", "")
        grant = await self.store.take("code", digest(code)) if code else None
        if grant is None:
            used = await self.store.get("used-code", digest(code)) if code else None
            if used is not None:  # RFC 6749 §4.1.2: a code used twice revokes what it granted
                await self.store.delete("family", str(used["family"]))
                logger.warning("oauth: an authorization code was replayed; its grant is revoked")
            raise OAuthError("invalid_grant", "the code is invalid, expired or already used")
        if grant["client_id"] != client.client_id:
            raise OAuthError("invalid_grant", "the code was issued to another client")
        if form.get("redirect_uri", grant["redirect_uri"]) != grant["redirect_uri"]:
            raise OAuthError("invalid_grant", "the redirect_uri differs from the authorization request's")
        verifier = form.get("code_verifier", "")
        if not _VERIFIER.fullmatch(verifier) or not hmac.compare_digest(s256(verifier), str(grant["challenge"])):
            raise OAuthError("invalid_grant", "the PKCE code_verifier does not match")
        resource = form.get("resource")
        if resource is not None and resource != grant["resource"]:
            raise OAuthError("invalid_target", "the resource differs from the authorization request's")
        family = secrets.token_urlsafe(16)
        expires_at = self._clock() + self.config.refresh_token_ttl
        await self.store.put("family", family, {"client_id": client.client_id}, self.config.refresh_token_ttl)
        await self.store.put("used-code", digest(code), {"family": family}, self.config.authorization_ttl)
        scopes: list[str] = list(grant["scopes"])
        return await self._issue({**grant, "family": family, "expires_at": expires_at}, scopes)

    async def _refresh(self, client: Client, form: Mapping[str, str]) -> dict[str, Any]:
        token = form.get("refresh_token", "")
        grant = await self.store.take("refresh", digest(token)) if token else None
        if grant is None:
            used = await self.store.get("used-refresh", digest(token)) if token else None
            if used is not None:  # reuse: a rotated token came back, someone holds a copy
                await self.store.delete("family", str(used["family"]))
                logger.warning("oauth: a rotated refresh token was reused; its grant is revoked")
            raise OAuthError("invalid_grant", "the refresh token is invalid, expired, revoked or already used")
        family = str(grant["family"])
        await self.store.put("used-refresh", digest(token), {"family": family}, self.config.refresh_token_ttl)
        if grant["client_id"] != client.client_id:
            await self.store.delete("family", family)
            raise OAuthError("invalid_grant", "the refresh token was issued to another client")
        if await self.store.get("family", family) is None or float(grant["expires_at"]) <= self._clock():
            raise OAuthError("invalid_grant", "the refresh token is invalid, expired, revoked or already used")
        resource = form.get("resource")
        if resource is not None and resource != grant["resource"]:
            raise OAuthError("invalid_target", "the resource differs from the original grant's")
        scopes: list[str] = list(grant["scopes"])
        if "scope" in form:
            asked = self._check_scopes(form["scope"])
            if not set(asked) <= set(scopes):
                raise OAuthError("invalid_scope", "a refresh cannot widen the grant")
            scopes = asked
        return await self._issue(grant, scopes)

    async def _issue(self, grant: Mapping[str, Any], scopes: Sequence[str]) -> dict[str, Any]:
        claims: dict[str, Any] = {
            "iss": self.config.issuer,
            "sub": grant["sub"],
            "aud": grant["resource"],
            "client_id": grant["client_id"],
            "scope": " ".join(scopes),
            "roles": list(grant["roles"]),
            "fid": grant["family"],
        }
        if grant.get("tenant"):
            claims["tenant"] = grant["tenant"]
        access, lifetime = self.keys.sign(claims, self.config.access_token_ttl)
        refresh = secrets.token_urlsafe(32)
        remaining = float(grant["expires_at"]) - self._clock()
        if remaining > 0:
            await self.store.put("refresh", digest(refresh), dict(grant), remaining)
        answer: dict[str, Any] = {"access_token": access, "token_type": "Bearer", "expires_in": lifetime}
        answer["scope"] = " ".join(scopes)
        if remaining > 0:
            answer["refresh_token"] = refresh
        return answer

    # ---------------------------------------------------------------------------------- revoke
    async def revoke(self, scope: Scope, receive: Receive, send: Send) -> None:
        _method(scope, "POST")
        form = await _read_form(scope, receive)
        client = await self._client_of(scope, form)
        token = form.get("token")
        if not token:
            raise OAuthError("invalid_request", "send the token to revoke")
        grant = await self.store.get("refresh", digest(token))
        if grant is not None and grant["client_id"] == client.client_id:
            await self.store.delete("refresh", digest(token))
            await self.store.delete("family", str(grant["family"]))
        elif (claims := self.keys.claims_of(token)) is not None and claims.get("client_id") == client.client_id:
            await self.store.delete("family", str(claims.get("fid", "")))
        # An access token (or anything else) is answered the same: RFC 7009 §2.2, 200 regardless.
        await _send(send, 200, b"", [*_NO_STORE, *_CORS])

    # ---------------------------------------------------------------------------------- register
    async def register(self, scope: Scope, receive: Receive, send: Send) -> None:
        _method(scope, "POST")
        body = await _read_body(receive, MAX_FORM_BYTES)
        if await self._over_limit("registrations", self.config.registration.max_per_minute):
            error = {"error": "temporarily_unavailable", "error_description": "too many registrations; retry later"}
            await _json(send, 429, error, [(b"retry-after", str(60 - int(self._clock()) % 60).encode())])
            return
        try:
            metadata: Any = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise OAuthError("invalid_client_metadata", "the body must be a JSON object") from None
        if not isinstance(metadata, dict):
            raise OAuthError("invalid_client_metadata", "the body must be a JSON object")
        try:
            answer = await self.clients.register(metadata)  # pyright: ignore[reportUnknownArgumentType]
        except ClientError as error:
            raise OAuthError(error.error, error.description) from None
        await _json(send, 201, answer)
