"""``identity: exchange``: the caller's token exchanged for one meant for the upstream (RFC 8693).

.. code-block:: yaml

    upstreams:
      billing:
        endpoints: [{url: https://billing.internal/mcp}]
        identity:
          mode: exchange
          token_url: https://login.example.com/oauth2/token     # the upstream's provider
          client_id: ${env:GATEWAY_CLIENT_ID}                   # the gateway, as that provider's client
          client_secret: ${env:GATEWAY_CLIENT_SECRET}
          audience: https://billing.internal/mcp                # and/or resource:
          scopes: [billing.read]

On a call, the caller's validated bearer token (the one that authenticated it at the gateway) is
the ``subject_token`` of a token request (``grant_type=urn:ietf:params:oauth:grant-type:token-
exchange``, ``subject_token_type`` and ``requested_token_type`` access tokens) at ``token_url``;
the answer's ``access_token`` goes to this upstream's requests only, as ``Authorization: Bearer``,
stamped per call as ``forward`` does (:mod:`mcplane.gateway.identity`).

The exchanged token is cached per (SHA-256 of the caller's token, audience, resource, scopes):
until shortly before its ``expires_in`` (a tenth of it, at most 30 s; 60 s when the provider says
nothing) and never past the caller's own token's ``exp``; at most :data:`MAX_CACHED` entries,
the least recently used dropped first. Concurrent calls with the same token share one exchange.

Failures, each with ``details.reason``:

* ``unauthenticated`` / ``no_subject_token``: the caller did not authenticate with a bearer token
  (anonymous, an API key, a client certificate): there is nothing to exchange;
* ``unauthenticated`` / ``exchange_refused``: the provider refused the caller's token
  (``invalid_grant``, or HTTP 401/403 naming no client problem);
* ``dependency_unavailable`` / ``exchange_unavailable``: the provider is unreachable, too slow,
  answers 5xx, too large or malformed, or refuses the gateway itself (``invalid_client``,
  ``unauthorized_client``, ``invalid_target``, ``invalid_scope``...: the gateway's configuration
  is wrong, which no caller can fix). Retryable.

No token ever reaches a log line: failures log the upstream, the HTTP status and the OAuth error code.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import anyio
import httpx
import orjson

from mcplane.errors import DependencyUnavailable, Unauthenticated
from mcplane.oauth.login import check_url

if TYPE_CHECKING:
    from mcplane.context import Context
    from mcplane.gateway.config import IdentityConfig

__all__ = [
    "ACCESS_TOKEN_TYPE",
    "MAX_CACHED",
    "TOKEN_EXCHANGE_GRANT",
    "TokenExchange",
    "check_exchange",
]

logger = logging.getLogger("mcplane.gateway")

TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
MAX_CACHED = 4096
"""Exchanged tokens kept at most (per upstream)."""
REFRESH_MARGIN = 30.0
DEFAULT_LIFETIME = 60.0
TIMEOUT = 10.0
MAX_RESPONSE_BYTES = 64 * 1024
MAX_SUBJECT_TOKEN_BYTES = 16 * 1024
_EXCHANGE_KEYS = ("token_url", "client_id", "client_secret", "audience", "resource")
_ERROR_CODE = re.compile(r"^[a-z0-9_.\-]{1,64}$")
_REFUSED = frozenset({"invalid_grant", "invalid_token", "access_denied"})


def check_exchange(config: IdentityConfig) -> None:
    """Refuse an ``exchange`` identity that cannot work, or exchange keys on another mode (``ValueError``)."""
    if config.mode != "exchange":
        stray = [key for key in _EXCHANGE_KEYS if getattr(config, key) is not None] + (
            ["scopes"] if config.scopes else []
        )
        if stray:
            raise ValueError(f"{', '.join(stray)}: only with identity mode exchange")
        return
    if config.token_url is None:
        raise ValueError("identity exchange needs token_url")
    check_url(config.token_url, "token_url")
    if config.audience is None and config.resource is None:
        raise ValueError("identity exchange needs audience, resource or both")
    if config.client_secret is not None and config.client_id is None:
        raise ValueError("identity exchange: client_secret needs client_id")


def _subject_token(ctx: Context) -> str:
    """The caller's bearer token, if a token is what authenticated it."""
    principal = ctx.principal
    headers = ctx.headers
    value = headers.get("authorization", "") if headers is not None else ""
    scheme, _, token = value.partition(" ")
    token = token.strip()
    # API keys, client certificates and local principals name their method; a verified token's claims do not.
    by_token = not principal.anonymous and "auth_method" not in principal.claims
    if not by_token or scheme.lower() != "bearer" or not token or len(token) > MAX_SUBJECT_TOKEN_BYTES:
        raise Unauthenticated(
            "this upstream needs the caller's bearer token to exchange", details={"reason": "no_subject_token"}
        )
    return token


def _safe_error(value: Any) -> str:
    return value if isinstance(value, str) and _ERROR_CODE.match(value) else "invalid"


class _Entry:
    __slots__ = ("expires", "token")

    def __init__(self, token: str, expires: float) -> None:
        self.token = token
        self.expires = expires


class TokenExchange:
    """One upstream's exchanges and their cache."""

    def __init__(
        self,
        upstream: str,
        config: IdentityConfig,
        *,
        http: httpx.AsyncClient | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        max_cached: int = MAX_CACHED,
        timeout: float = TIMEOUT,
    ) -> None:
        assert config.token_url is not None  # check_exchange
        self.upstream = upstream
        self.config = config
        self._token_url = config.token_url
        self._http = http
        self._monotonic = monotonic
        self._wall = wall
        self._max_cached = max_cached
        self._timeout = timeout
        self._cache: OrderedDict[bytes, _Entry] = OrderedDict()
        self._inflight: dict[bytes, anyio.Event] = {}
        self.exchanges = 0
        """Exchanges started (for tests and metrics)."""

    async def headers(self, ctx: Context) -> dict[str, str]:
        """``{"Authorization": "Bearer <exchanged>"}`` for this call, from the cache when it can."""
        subject = _subject_token(ctx)
        key = hashlib.sha256(subject.encode("utf-8", "replace")).digest()
        while True:
            entry = self._cached(key)
            if entry is not None:
                return {"Authorization": f"Bearer {entry}"}
            pending = self._inflight.get(key)
            if pending is None:
                break
            await pending.wait()  # the same token is being exchanged: take its answer (or try ourselves)
            if self._cached(key) is None:
                break
        done = self._inflight[key] = anyio.Event()
        try:
            token, lifetime = await self._exchange(subject)
        finally:
            del self._inflight[key]
            done.set()
        self._remember(key, token, lifetime, ctx.principal.claims.get("exp"))
        return {"Authorization": f"Bearer {token}"}

    def _cached(self, key: bytes) -> str | None:
        entry = self._cache.get(key)
        if entry is None:
            return None
        if self._monotonic() >= entry.expires:
            del self._cache[key]
            return None
        self._cache.move_to_end(key)
        return entry.token

    def _remember(self, key: bytes, token: str, lifetime: float, subject_exp: Any) -> None:
        keep = lifetime - min(REFRESH_MARGIN, lifetime / 10)
        if isinstance(subject_exp, int | float) and not isinstance(subject_exp, bool) and math.isfinite(subject_exp):
            keep = min(keep, float(subject_exp) - self._wall())
        if keep <= 0:
            return
        self._cache[key] = _Entry(token, self._monotonic() + keep)
        self._cache.move_to_end(key)
        while len(self._cache) > self._max_cached:
            self._cache.popitem(last=False)

    def _request(self, subject: str) -> tuple[dict[str, str], dict[str, str]]:
        config = self.config
        form = {
            "grant_type": TOKEN_EXCHANGE_GRANT,
            "subject_token": subject,
            "subject_token_type": ACCESS_TOKEN_TYPE,
            "requested_token_type": ACCESS_TOKEN_TYPE,
        }
        if config.audience is not None:
            form["audience"] = config.audience
        if config.resource is not None:
            form["resource"] = config.resource
        if config.scopes:
            form["scope"] = " ".join(config.scopes)
        headers = {"accept": "application/json"}
        if config.client_id is not None:
            client_id = config.client_id.get()
            secret = config.client_secret.get() if config.client_secret is not None else None
            if secret is None:
                form["client_id"] = client_id
            elif config.auth_method == "client_secret_post":
                form["client_id"], form["client_secret"] = client_id, secret
            else:  # RFC 6749 §2.3.1: each part form-urlencoded before the Basic encoding
                basic = base64.b64encode(f"{quote(client_id, safe='')}:{quote(secret, safe='')}".encode()).decode()
                headers["authorization"] = f"Basic {basic}"
        return form, headers

    def _unavailable(self, why: str) -> DependencyUnavailable:
        logger.warning("upstream %s: token exchange failed: %s", self.upstream, why)
        return DependencyUnavailable(
            f"the token service for upstream {self.upstream!r} is unavailable",
            details={"reason": "exchange_unavailable"},
        )

    async def _exchange(self, subject: str) -> tuple[str, float]:
        self.exchanges += 1
        form, headers = self._request(subject)
        try:
            with anyio.fail_after(self._timeout):
                if self._http is not None:
                    status, body = await self._post(self._http, form, headers)
                else:
                    async with httpx.AsyncClient(follow_redirects=False) as http:
                        status, body = await self._post(http, form, headers)
        except TimeoutError:
            raise self._unavailable(f"no answer within {self._timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise self._unavailable(type(exc).__name__) from None
        if body is None:
            raise self._unavailable(f"HTTP {status}, an answer too large or not JSON")
        if status != 200:
            error = _safe_error(body.get("error"))
            if error in _REFUSED or (status in (401, 403) and error == "invalid"):
                logger.info("upstream %s: token exchange refused the caller's token: %s", self.upstream, error)
                raise Unauthenticated(
                    f"the caller's token was refused for upstream {self.upstream!r}",
                    details={"reason": "exchange_refused"},
                )
            raise self._unavailable(f"HTTP {status} {error}")
        token = body.get("access_token")
        token_type = body.get("token_type")
        if (
            not isinstance(token, str)
            or not token
            or not all("!" <= c <= "~" for c in token)  # it goes into a header: visible ASCII only
            or (isinstance(token_type, str) and token_type.lower() not in ("bearer", "n_a"))
        ):
            raise self._unavailable("the answer carries no bearer access_token")
        expires_in = body.get("expires_in")
        lifetime = DEFAULT_LIFETIME
        if isinstance(expires_in, int | float) and not isinstance(expires_in, bool) and math.isfinite(expires_in):
            lifetime = float(expires_in)
        return token, lifetime

    async def _post(
        self, http: httpx.AsyncClient, form: Mapping[str, str], headers: Mapping[str, str]
    ) -> tuple[int, dict[str, Any] | None]:
        async with http.stream("POST", self._token_url, data=form, headers=headers, timeout=self._timeout) as response:
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > MAX_RESPONSE_BYTES:
                    return response.status_code, None
                chunks.append(chunk)
        try:
            body: Any = orjson.loads(b"".join(chunks))
        except orjson.JSONDecodeError:
            return response.status_code, None
        return response.status_code, body if isinstance(body, dict) else None  # pyright: ignore[reportUnknownVariableType]
