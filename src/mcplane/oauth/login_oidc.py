"""Login at an OpenID Connect provider: discovery, authorization code with PKCE S256 and a nonce,
the token request, and the ID token verified before any claim is believed.

* Discovery (``issuer + /.well-known/openid-configuration``) is fetched on first use and again
  after ``discovery_max_age``; a failed refresh keeps the document already known. Its ``issuer``
  must equal the configured one exactly (OpenID Connect Discovery §4.3), and every endpoint must
  be https (http only on loopback).
* The ID token is verified with mcplane's JWT verifier (:class:`mcplane.auth.tokens.JWTVerifier`,
  so the same JWKS cache: single-flight refresh, pinned algorithms RS256/ES256): signature,
  ``iss``, ``aud`` (the client id), ``exp``/``nbf`` with ``leeway``; then ``azp`` when the token
  names several audiences, the ``nonce`` of this login, and ``at_hash`` when present.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import anyio
import httpx

from mcplane.auth.config import JWTConfig
from mcplane.auth.errors import AuthenticationFailed
from mcplane.auth.tokens import JWTVerifier
from mcplane.errors import DependencyUnavailable
from mcplane.oauth.login import (
    LoginFailed,
    LoginIdentity,
    LoginStart,
    TokenAuthMethod,
    UpstreamLoginConfig,
    check_url,
)
from mcplane.oauth.login_callback import authorization_url, callback_code, new_secrets, s256, safe_error
from mcplane.oauth.login_claims import identity_from_claims
from mcplane.oauth.login_http import call_provider

__all__ = ["Discovery", "OIDCLogin"]

logger = logging.getLogger("mcplane.oauth")

ID_TOKEN_ALGORITHMS = ["RS256", "ES256"]
MAX_ID_TOKEN_BYTES = 16 * 1024


@dataclass(frozen=True, slots=True)
class Discovery:
    """What mcplane uses of the provider's discovery document."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    token_auth_methods: tuple[str, ...]
    iss_parameter: bool
    """``authorization_response_iss_parameter_supported``: the redirect back must carry ``iss``."""


def parse_discovery(document: Any, issuer: str) -> Discovery:
    if not isinstance(document, dict):
        raise LoginFailed("provider_unavailable", "the identity provider's discovery document is not a JSON object")
    doc: dict[str, Any] = document  # pyright: ignore[reportUnknownVariableType]
    if doc.get("issuer") != issuer:
        raise LoginFailed("provider_unavailable", "the discovery document names another issuer")
    endpoints: dict[str, str] = {}
    for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        value = doc.get(name)
        try:
            endpoints[name] = check_url(value if isinstance(value, str) else "", name)
        except ValueError:
            raise LoginFailed("provider_unavailable", f"the discovery document has no usable {name}") from None
    methods = doc.get("token_endpoint_auth_methods_supported", ["client_secret_basic"])
    return Discovery(
        issuer=issuer,
        authorization_endpoint=endpoints["authorization_endpoint"],
        token_endpoint=endpoints["token_endpoint"],
        jwks_uri=endpoints["jwks_uri"],
        token_auth_methods=tuple(m for m in methods if isinstance(m, str)) if isinstance(methods, list) else (),  # pyright: ignore[reportUnknownVariableType]
        iss_parameter=doc.get("authorization_response_iss_parameter_supported") is True,
    )


def token_auth(config: UpstreamLoginConfig, supported: tuple[str, ...]) -> TokenAuthMethod:
    if config.token_auth_method is not None:
        return config.token_auth_method
    if config.client_secret is None:
        return "none"
    if "client_secret_basic" not in supported and "client_secret_post" in supported:
        return "client_secret_post"
    return "client_secret_basic"


def client_credentials(config: UpstreamLoginConfig, method: TokenAuthMethod) -> tuple[dict[str, str], dict[str, str]]:
    """(form fields, headers) that authenticate the client at the token endpoint."""
    client_id = config.client_id.get()
    if method == "none" or config.client_secret is None:
        return {"client_id": client_id}, {}
    secret = config.client_secret.get()
    if method == "client_secret_post":
        return {"client_id": client_id, "client_secret": secret}, {}
    # RFC 6749 §2.3.1: each part form-urlencoded before the Basic encoding.
    basic = base64.b64encode(f"{quote(client_id, safe='')}:{quote(secret, safe='')}".encode()).decode()
    return {}, {"authorization": f"Basic {basic}"}


def at_hash(access_token: str) -> str:
    """OpenID Connect Core §3.1.3.6 for RS256/ES256: the left half of SHA-256, base64url."""
    digest = hashlib.sha256(access_token.encode("ascii", "replace")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode()


class OIDCLogin:
    def __init__(
        self,
        config: UpstreamLoginConfig,
        *,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        assert config.issuer is not None  # UpstreamLoginConfig requires it for every OIDC preset
        self.config = config
        self.issuer = config.issuer
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(follow_redirects=False)
        self._clock = clock
        self._monotonic = monotonic
        self._discovery: Discovery | None = None
        self._discovered_at = 0.0
        self._verifier: JWTVerifier | None = None
        self._lock = anyio.Lock()

    async def discovery(self) -> Discovery:
        """The provider's metadata, fetched when missing or older than ``discovery_max_age``."""
        known = self._discovery
        if known is not None and self._monotonic() - self._discovered_at < self.config.discovery_max_age:
            return known
        async with self._lock:
            known = self._discovery
            if known is not None and self._monotonic() - self._discovered_at < self.config.discovery_max_age:
                return known
            try:
                fresh = await self._fetch_discovery()
            except LoginFailed:
                if known is None:
                    raise
                logger.warning("identity provider discovery refresh failed; keeping the known document")
                self._discovered_at = self._monotonic()
                return known
            if self._verifier is None or known is None or known.jwks_uri != fresh.jwks_uri:
                self._verifier = self._new_verifier(fresh)
            self._discovery, self._discovered_at = fresh, self._monotonic()
            return fresh

    async def _fetch_discovery(self) -> Discovery:
        url = f"{self.issuer.rstrip('/')}/.well-known/openid-configuration"
        answer = await call_provider(
            self._http,
            "GET",
            url,
            what="discovery",
            seconds=self.config.timeout,
            max_bytes=self.config.max_response_bytes,
            headers={"accept": "application/json"},
        )
        if answer.status != 200:
            logger.warning("identity provider discovery: HTTP %d", answer.status)
            raise LoginFailed(
                "provider_unavailable", f"the identity provider's discovery answered HTTP {answer.status}"
            )
        return parse_discovery(answer.body, self.issuer)

    def _new_verifier(self, discovery: Discovery) -> JWTVerifier:
        client_id = self.config.client_id.get()
        jwt_config = JWTConfig(
            issuer=discovery.issuer,
            audience=client_id,
            algorithms=ID_TOKEN_ALGORITHMS,  # pyright: ignore[reportArgumentType]
            jwks_url=discovery.jwks_uri,
            jwks_timeout=self.config.timeout,
            leeway=self.config.leeway,
            max_token_bytes=MAX_ID_TOKEN_BYTES,
        )
        return JWTVerifier(jwt_config, audience=client_id, clock=self._clock, http_client=self._http)

    async def begin(self, *, state: str, redirect_uri: str) -> LoginStart:
        discovery = await self.discovery()
        verifier, nonce = new_secrets()
        params = {
            **self.config.authorize_params,
            "response_type": "code",
            "client_id": self.config.client_id.get(),
            "redirect_uri": redirect_uri,
            "scope": " ".join(self.config.scopes),
            "state": state,
            "nonce": nonce,
            "code_challenge": s256(verifier),
            "code_challenge_method": "S256",
        }
        return LoginStart(
            url=authorization_url(discovery.authorization_endpoint, params),
            saved={"state": state, "nonce": nonce, "code_verifier": verifier},
        )

    async def complete(self, *, query: Mapping[str, str], saved: Mapping[str, str], redirect_uri: str) -> LoginIdentity:
        discovery = await self.discovery()
        code = callback_code(query, saved, issuer=discovery.issuer, iss_required=discovery.iss_parameter)
        tokens = await self._redeem(discovery, code, saved, redirect_uri)
        claims = await self._verify_id_token(tokens, saved)
        identity = identity_from_claims(self.config, claims)
        logger.info("login at the identity provider completed")
        return identity

    async def _redeem(
        self, discovery: Discovery, code: str, saved: Mapping[str, str], redirect_uri: str
    ) -> dict[str, Any]:
        fields, headers = client_credentials(self.config, token_auth(self.config, discovery.token_auth_methods))
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": saved.get("code_verifier", ""),
            **fields,
        }
        answer = await call_provider(
            self._http,
            "POST",
            discovery.token_endpoint,
            what="token endpoint",
            seconds=self.config.timeout,
            max_bytes=self.config.max_response_bytes,
            data=form,
            headers={"accept": "application/json", **headers},
        )
        body: Any = answer.body
        if answer.status != 200 or not isinstance(body, dict):
            error = safe_error(body.get("error")) if isinstance(body, dict) else "invalid"  # pyright: ignore[reportUnknownMemberType, reportUnknownArgumentType]
            logger.info("identity provider token endpoint refused the code: HTTP %d %s", answer.status, error)
            raise LoginFailed("token_refused", f"the identity provider refused the code ({error})")
        return body  # pyright: ignore[reportUnknownVariableType]

    async def _verify_id_token(self, tokens: Mapping[str, Any], saved: Mapping[str, str]) -> dict[str, Any]:
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str):
            raise LoginFailed("invalid_id_token", "the identity provider returned no ID token")
        verifier = self._verifier
        assert verifier is not None  # made with the discovery document
        try:
            claims = await verifier.verify(id_token)
        except AuthenticationFailed as exc:
            logger.info("identity provider ID token refused: %s", exc.reason)
            raise LoginFailed("invalid_id_token", f"the ID token is not acceptable ({exc.reason})") from None
        except DependencyUnavailable:
            raise LoginFailed("provider_unavailable", "the identity provider's signing keys are unreachable") from None
        client_id = self.config.client_id.get()
        audience = claims.get("aud")
        azp = claims.get("azp")
        if (isinstance(audience, list) and len(audience) > 1 and azp is None) or (azp is not None and azp != client_id):  # pyright: ignore[reportUnknownArgumentType]
            raise LoginFailed("invalid_id_token", "the ID token was issued to another client (azp)")
        nonce = claims.get("nonce")
        expected = saved.get("nonce", "")
        if not isinstance(nonce, str) or not expected or not hmac.compare_digest(nonce, expected):
            raise LoginFailed("nonce_mismatch", "the ID token does not belong to this login (nonce)")
        access_token = tokens.get("access_token")
        expected_hash = claims.get("at_hash")
        if expected_hash is not None and (
            not isinstance(access_token, str)
            or not isinstance(expected_hash, str)
            or not hmac.compare_digest(at_hash(access_token), expected_hash)
        ):
            raise LoginFailed("invalid_id_token", "the ID token does not match the access token (at_hash)")
        return claims

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()
