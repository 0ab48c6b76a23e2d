"""Login with GitHub: plain OAuth 2.0 (GitHub issues no ID token), the user read from the API.

The authorization code (with PKCE S256) is redeemed at ``{base_url}/login/oauth/access_token``;
the user is ``GET {api_url}/user`` with that token (its numeric ``id`` is the subject: a login
name can be renamed and reused). With ``fetch_email``, ``GET {api_url}/user/emails`` gives the
verified primary address as ``email`` with ``email_verified: true``; otherwise ``email`` is the
profile's public address and ``email_verified`` is false, so ``allowed_domains`` needs
``fetch_email``. GitHub's token is used for these two reads only and then forgotten.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import httpx

from mcplane.oauth.login import LoginFailed, LoginIdentity, LoginStart, UpstreamLoginConfig
from mcplane.oauth.login_callback import authorization_url, callback_code, new_secrets, s256, safe_error
from mcplane.oauth.login_claims import identity_from_claims
from mcplane.oauth.login_http import call_provider

__all__ = ["GitHubLogin"]

logger = logging.getLogger("mcplane.oauth")

API_HEADERS = {"accept": "application/vnd.github+json", "x-github-api-version": "2022-11-28"}
MAX_EMAILS = 100


class GitHubLogin:
    def __init__(self, config: UpstreamLoginConfig, *, http: httpx.AsyncClient | None = None) -> None:
        assert config.base_url is not None  # the github preset fills both
        assert config.api_url is not None
        self.config = config
        self._web = config.base_url.rstrip("/")
        self._api = config.api_url.rstrip("/")
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(follow_redirects=False)

    async def begin(self, *, state: str, redirect_uri: str) -> LoginStart:
        verifier, _ = new_secrets()
        params = {
            **self.config.authorize_params,
            "client_id": self.config.client_id.get(),
            "redirect_uri": redirect_uri,
            "scope": " ".join(self.config.scopes),
            "state": state,
            "code_challenge": s256(verifier),
            "code_challenge_method": "S256",
        }
        return LoginStart(
            url=authorization_url(f"{self._web}/login/oauth/authorize", params),
            saved={"state": state, "code_verifier": verifier},
        )

    async def complete(self, *, query: Mapping[str, str], saved: Mapping[str, str], redirect_uri: str) -> LoginIdentity:
        code = callback_code(query, saved, issuer=None, iss_required=False)
        token = await self._redeem(code, saved, redirect_uri)
        user = await self._get(token, "/user", "user API")
        if not isinstance(user, dict):
            raise LoginFailed("provider_unavailable", "GitHub's user API answered something unexpected")
        claims: dict[str, Any] = {**user, "email_verified": False}  # pyright: ignore[reportUnknownArgumentType]
        if self.config.fetch_email:
            claims.pop("email", None)
            emails = await self._get(token, "/user/emails", "emails API")
            primary = _verified_primary(emails)
            if primary is not None:
                claims["email"], claims["email_verified"] = primary, True
        identity = identity_from_claims(self.config, claims)
        logger.info("login with GitHub completed")
        return identity

    async def _redeem(self, code: str, saved: Mapping[str, str], redirect_uri: str) -> str:
        form = {
            "client_id": self.config.client_id.get(),
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": saved.get("code_verifier", ""),
        }
        if self.config.client_secret is not None:
            form["client_secret"] = self.config.client_secret.get()
        answer = await call_provider(
            self._http,
            "POST",
            f"{self._web}/login/oauth/access_token",
            what="token endpoint",
            seconds=self.config.timeout,
            max_bytes=self.config.max_response_bytes,
            data=form,
            headers={"accept": "application/json"},
        )
        body: Any = answer.body
        token = body.get("access_token") if isinstance(body, dict) else None  # pyright: ignore[reportUnknownMemberType]
        if answer.status != 200 or not isinstance(token, str) or not token:
            error = safe_error(body.get("error")) if isinstance(body, dict) else "invalid"  # pyright: ignore[reportUnknownMemberType, reportUnknownArgumentType]
            logger.info("GitHub token endpoint refused the code: HTTP %d %s", answer.status, error)
            raise LoginFailed("token_refused", f"GitHub refused the code ({error})")
        return token

    async def _get(self, token: str, path: str, what: str) -> Any:
        answer = await call_provider(
            self._http,
            "GET",
            f"{self._api}{path}",
            what=what,
            seconds=self.config.timeout,
            max_bytes=self.config.max_response_bytes,
            headers={**API_HEADERS, "authorization": f"Bearer {token}"},
        )
        if answer.status != 200:
            logger.warning("GitHub %s: HTTP %d", what, answer.status)
            raise LoginFailed("provider_unavailable", f"GitHub's {what} answered HTTP {answer.status}")
        return answer.body

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()


def _verified_primary(emails: Any) -> str | None:
    if not isinstance(emails, list):
        return None
    for entry in emails[:MAX_EMAILS]:  # pyright: ignore[reportUnknownVariableType]
        if isinstance(entry, dict) and entry.get("primary") is True and entry.get("verified") is True:  # pyright: ignore[reportUnknownMemberType]
            email = entry.get("email")  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
            return email if isinstance(email, str) else None
    return None
