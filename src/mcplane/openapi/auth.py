"""Credentials for the API: bearer, API key (header, query or cookie), basic, OAuth2 client credentials.

Every value is a secret reference resolved by :mod:`mcplane.secrets` and read at each request
(a rotated ``${vault:...}`` value is used from its next refresh). The OAuth2 token is fetched
once for all concurrent calls, cached until ``refresh_before`` seconds before it expires, and
dropped when the API answers 401 so the next attempt fetches a new one.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2 as httpx

from mcplane.errors import DependencyUnavailable, Forbidden
from mcplane.openapi.config import AuthConfig

__all__ = ["ApiCredentials", "Credentials"]


@dataclass
class Credentials:
    """What one request carries."""

    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)
    cookies: dict[str, str] = field(default_factory=dict)


class ApiCredentials:
    def __init__(self, config: AuthConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self._token: str | None = None
        self._expires = 0.0
        self._lock = anyio.Lock()
        self.fetches = 0
        """Tokens fetched so far (OAuth2)."""

    async def apply(self, client: httpx.AsyncClient) -> Credentials:
        config = self.config
        out = Credentials()
        if config.bearer is not None:
            out.headers["Authorization"] = f"Bearer {config.bearer.get()}"
        elif config.api_key is not None:
            place, name = config.api_key.where
            target = {"header": out.headers, "query": out.query, "cookie": out.cookies}[place]
            target[name] = config.api_key.value.get()
        elif config.basic is not None:
            pair = f"{config.basic.username.get()}:{config.basic.password.get()}".encode()
            out.headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        elif config.oauth2 is not None:
            out.headers["Authorization"] = f"Bearer {await self._oauth_token(client)}"
        return out

    @property
    def refreshable(self) -> bool:
        """A refused credential can be replaced at once (an OAuth2 token)."""
        return self.config.oauth2 is not None

    def rejected(self) -> None:
        """The API answered 401: forget the cached token (the next attempt fetches another)."""
        self._token = None

    async def _oauth_token(self, client: httpx.AsyncClient) -> str:
        oauth = self.config.oauth2
        assert oauth is not None
        if self._token is not None and self._clock() < self._expires:
            return self._token
        async with self._lock:
            if self._token is not None and self._clock() < self._expires:
                return self._token
            form: dict[str, str] = {"grant_type": "client_credentials"}
            if oauth.scopes:
                form["scope"] = " ".join(oauth.scopes)
            if oauth.audience:
                form["audience"] = oauth.audience
            auth: Any = None
            if oauth.client_auth == "basic":
                auth = httpx.BasicAuth(oauth.client_id.get(), oauth.client_secret.get())
            else:
                form["client_id"], form["client_secret"] = oauth.client_id.get(), oauth.client_secret.get()
            try:
                response = await client.post(
                    oauth.token_url, data=form, auth=auth, headers={"Accept": "application/json"}
                )
            except httpx.HTTPError as exc:
                raise DependencyUnavailable(
                    "the API's token endpoint is unreachable", details={"reason": type(exc).__name__}
                ) from None
            if response.status_code != 200:
                raise Forbidden(
                    "the API's token endpoint refused the client credentials",
                    details={"status": response.status_code, "body": response.text[:500]},
                )
            try:
                body: Any = response.json()
                token = str(body["access_token"])
                lifetime = float(body.get("expires_in", 3600))
            except (ValueError, KeyError, TypeError):
                raise DependencyUnavailable(
                    "the API's token endpoint answered no access_token", details={"reason": "invalid_token_response"}
                ) from None
            self.fetches += 1
            self._token = token
            self._expires = self._clock() + max(0.0, lifetime - oauth.refresh_before)
            return token
