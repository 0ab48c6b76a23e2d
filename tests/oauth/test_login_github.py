"""The GitHub preset (plain OAuth, no ID token) against a small fake of GitHub's OAuth endpoints
and REST API on loopback: the code with PKCE, the user from /user, the email from /user/emails."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from mcplane.oauth.login import LoginFailed, UpstreamLogin, UpstreamLoginConfig, build_login
from tests.serving import serving

REDIRECT_URI = "http://127.0.0.1:9/oauth/callback"
CLIENT_ID, CLIENT_SECRET = "Iv1.fake-client", "fake-client-secret-value"


@dataclass
class FakeGitHub:
    """GitHub's authorize and token endpoints and the two API reads mcplane makes."""

    codes: dict[str, tuple[str, str]] = field(default_factory=lambda: {})  # code -> (challenge, redirect_uri)
    tokens: set[str] = field(default_factory=lambda: set())
    user_status: int = 200
    emails: list[dict[str, Any]] = field(
        default_factory=lambda: [
            {"email": "old@elsewhere.example", "primary": False, "verified": True},
            {"email": "octo@example.com", "primary": True, "verified": True},
        ]
    )

    def app(self) -> Starlette:
        async def authorize(request: Request) -> Response:
            params = request.query_params
            assert params["client_id"] == CLIENT_ID
            assert params["code_challenge_method"] == "S256"
            code = secrets.token_urlsafe(12)
            self.codes[code] = (params["code_challenge"], params["redirect_uri"])
            back = urlencode({"code": code, "state": params["state"]})
            return RedirectResponse(f"{params['redirect_uri']}?{back}", status_code=302)

        async def access_token(request: Request) -> Response:
            form = await request.form()
            assert request.headers["accept"] == "application/json"
            known = self.codes.pop(str(form.get("code")), None)
            verifier = str(form.get("code_verifier", ""))
            challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            if (
                known is None
                or form.get("client_id") != CLIENT_ID
                or form.get("client_secret") != CLIENT_SECRET
                or known != (challenge, form.get("redirect_uri"))
            ):
                return JSONResponse({"error": "bad_verification_code", "error_description": "The code is wrong."})
            token = f"gho_{secrets.token_urlsafe(16)}"
            self.tokens.add(token)
            return JSONResponse({"access_token": token, "token_type": "bearer", "scope": "read:user,user:email"})

        def authorized(request: Request) -> bool:
            return request.headers.get("authorization", "").removeprefix("Bearer ") in self.tokens

        async def user(request: Request) -> Response:
            if not authorized(request):
                return JSONResponse({"message": "Bad credentials"}, status_code=401)
            if self.user_status != 200:
                return JSONResponse({"message": "Server Error"}, status_code=self.user_status)
            return JSONResponse(
                {"id": 583231, "login": "octocat", "name": "The Octocat", "email": "octo@public.example"}
            )

        async def emails(request: Request) -> Response:
            if not authorized(request):
                return JSONResponse({"message": "Bad credentials"}, status_code=401)
            return JSONResponse(self.emails)

        return Starlette(
            routes=[
                Route("/login/oauth/authorize", authorize),
                Route("/login/oauth/access_token", access_token, methods=["POST"]),
                Route("/api/user", user),
                Route("/api/user/emails", emails),
            ]
        )


@asynccontextmanager
async def github(fake: FakeGitHub | None = None) -> AsyncGenerator[tuple[FakeGitHub, str]]:
    """The fake on loopback for the block (a context in the test's own task, as uvicorn needs)."""
    fake = fake or FakeGitHub()
    async with serving(fake.app(), force_exit=True) as url:
        yield fake, url


def github_login(url: str, **extra: Any) -> UpstreamLogin:
    config = UpstreamLoginConfig.model_validate(
        {
            "preset": "github",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "base_url": url,
            "api_url": f"{url}/api",
            **extra,
        }
    )
    return build_login(config)


async def browse(upstream: UpstreamLogin, state: str = "st-1") -> tuple[dict[str, str], dict[str, str]]:
    start = await upstream.begin(state=state, redirect_uri=REDIRECT_URI)
    async with httpx.AsyncClient() as browser:
        answer = await browser.get(start.url)
    assert answer.status_code == 302
    return dict(parse_qsl(urlsplit(answer.headers["location"]).query)), dict(start.saved)


async def test_a_github_login_gives_the_user_by_numeric_id() -> None:
    async with github() as (_, url):
        upstream = github_login(url, subject_prefix="github:", role_map={})
        try:
            query, saved = await browse(upstream)
            identity = await upstream.complete(query=query, saved=saved, redirect_uri=REDIRECT_URI)
        finally:
            await upstream.aclose()
        assert identity.subject == "github:583231"
        assert identity.claims["login"] == "octocat"
        assert identity.claims["email_verified"] is False  # the public profile address proves nothing
        assert identity.roles == ()
        assert (
            dict(parse_qsl(urlsplit((await upstream.begin(state="s", redirect_uri=REDIRECT_URI)).url).query))["scope"]
            == "read:user"
        )


async def test_fetch_email_takes_the_verified_primary_address() -> None:
    async with github() as (_, url):
        upstream = github_login(url, fetch_email=True, allowed_domains=["example.com"])
        try:
            query, saved = await browse(upstream)
            identity = await upstream.complete(query=query, saved=saved, redirect_uri=REDIRECT_URI)
        finally:
            await upstream.aclose()
        assert (identity.claims["email"], identity.claims["email_verified"]) == ("octo@example.com", True)


async def test_allowed_domains_refuse_an_unverified_github_email() -> None:
    async with github() as (fake, url):
        fake.emails = [{"email": "octo@example.com", "primary": True, "verified": False}]
        for extra in ({"fetch_email": True}, {}):
            upstream = github_login(url, allowed_domains=["example.com"], **extra)
            try:
                query, saved = await browse(upstream)
                with pytest.raises(LoginFailed) as caught:
                    await upstream.complete(query=query, saved=saved, redirect_uri=REDIRECT_URI)
            finally:
                await upstream.aclose()
            assert caught.value.reason == "not_allowed"


@pytest.mark.parametrize("forge", ["code", "verifier", "state"])
async def test_a_forged_github_callback_fails(forge: str) -> None:
    async with github() as (_, url):
        upstream = github_login(url)
        try:
            query, saved = await browse(upstream)
            if forge == "code":
                query["code"] = "guessed"
            elif forge == "verifier":
                saved["code_verifier"] = secrets.token_urlsafe(64)
            else:
                query["state"] = "another"
            with pytest.raises(LoginFailed) as caught:
                await upstream.complete(query=query, saved=saved, redirect_uri=REDIRECT_URI)
        finally:
            await upstream.aclose()
        expected = "state_mismatch" if forge == "state" else "token_refused"
        assert caught.value.reason == expected
        if expected == "token_refused":
            assert "bad_verification_code" in caught.value.message


async def test_a_failing_github_api_fails_the_login() -> None:
    async with github() as (fake, url):
        fake.user_status = 502
        upstream = github_login(url)
        try:
            query, saved = await browse(upstream)
            with pytest.raises(LoginFailed) as caught:
                await upstream.complete(query=query, saved=saved, redirect_uri=REDIRECT_URI)
        finally:
            await upstream.aclose()
        assert caught.value.reason == "provider_unavailable"
