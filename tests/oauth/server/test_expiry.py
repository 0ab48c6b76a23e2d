"""Lifetimes against an injected clock: the authorization server in-process on a real socket
(uvicorn), its store in memory on the same clock, the real identity provider for the sign-in."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from urllib.parse import urlencode

import httpx
from starlette.types import Receive, Scope, Send

from mcplane.backends.state import MemoryStateStore
from mcplane.oauth.clients import Clients
from mcplane.oauth.config import OAuthServerConfig
from mcplane.oauth.fetch import SafeFetcher
from mcplane.oauth.login import build_login
from mcplane.oauth.server import AuthorizationServer
from mcplane.oauth.signing import IssuerKeys
from mcplane.oauth.store import OAuthStore, StateCipher
from tests.oauth.conftest import IdP, pkce_pair
from tests.oauth.server.conftest import Browser, query_of
from tests.serving import loopback_socket, serve_on

REDIRECT_URI = "http://127.0.0.1:9/callback"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def serving(idp: IdP, clock: Clock, **extra: object) -> AsyncGenerator[str]:
    sock, base = loopback_socket()
    client_id, client_secret = idp.register_client([f"{base}/oauth/callback"])
    config = OAuthServerConfig.model_validate(
        {
            "issuer": base,
            "login": {"issuer": idp.issuer, "client_id": client_id, "client_secret": client_secret},
            "refresh_token_ttl": "1h",
            "code_ttl": "30s",
            **extra,
        }
    )
    store = OAuthStore(MemoryStateStore(clock=clock), StateCipher([b"s" * 32]))
    server = AuthorizationServer(
        config,
        resource=f"{base}/mcp",
        scopes_supported=(),
        store=store,
        keys=IssuerKeys([], clock=clock),
        clients=Clients(config, store, SafeFetcher(), clock=clock),
        login=build_login(config.login),
        clock=clock,
    )
    routes = server.routes()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await routes[scope["path"]](scope, receive, send)

    try:
        async with serve_on(sock, app):
            yield base
    finally:
        await server.aclose()


async def test_an_expired_code_and_an_expired_refresh_token_are_refused(idp: IdP) -> None:
    clock = Clock()
    async with serving(idp, clock) as base, httpx.AsyncClient(timeout=10) as http:
        registered = await http.post(
            f"{base}/oauth/register", json={"redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none"}
        )
        client_id = registered.json()["client_id"]

        async def code() -> tuple[str, str]:
            verifier, challenge = pkce_pair()
            query = {
                "response_type": "code",
                "client_id": client_id,
                "redirect_uri": REDIRECT_URI,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
            browser = Browser(idp)
            try:
                final = await browser.authorize(f"{base}/oauth/authorize?{urlencode(query)}")
            finally:
                await browser.aclose()
            return query_of(final)["code"], verifier

        def redeem(code: str, verifier: str) -> dict[str, str]:
            return {
                "grant_type": "authorization_code",
                "client_id": client_id,
                "code": code,
                "redirect_uri": REDIRECT_URI,
                "code_verifier": verifier,
            }

        stale, stale_verifier = await code()
        clock.now += 31  # past code_ttl
        late = await http.post(f"{base}/oauth/token", data=redeem(stale, stale_verifier))
        assert late.status_code == 400
        assert late.json()["error"] == "invalid_grant"

        fresh, verifier = await code()
        tokens = (await http.post(f"{base}/oauth/token", data=redeem(fresh, verifier))).json()
        refresh = {"grant_type": "refresh_token", "client_id": client_id, "refresh_token": tokens["refresh_token"]}
        clock.now += 1800  # within the grant's hour: rotates
        rotated = await http.post(f"{base}/oauth/token", data=refresh)
        assert rotated.status_code == 200, rotated.text
        clock.now += 1801  # the grant's hour is over
        refresh["refresh_token"] = rotated.json()["refresh_token"]
        expired = await http.post(f"{base}/oauth/token", data=refresh)
        assert expired.status_code == 400
        assert expired.json()["error"] == "invalid_grant"


async def test_sign_ins_beyond_the_limit_wait_for_the_next_minute(idp: IdP) -> None:
    """Each sign-in started stores a pending record: an unauthenticated flood is capped per minute;
    refused requests (an unknown client, here) do not count."""
    clock = Clock()
    body = {"redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none"}
    _, challenge = pkce_pair()
    async with serving(idp, clock, max_authorizations_per_minute=2) as base, httpx.AsyncClient(timeout=10) as http:
        client_id = (await http.post(f"{base}/oauth/register", json=body)).json()["client_id"]
        query = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": REDIRECT_URI,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        url = f"{base}/oauth/authorize?{urlencode(query)}"
        unknown = await http.get(f"{base}/oauth/authorize?{urlencode({**query, 'client_id': 'nobody'})}")
        statuses = [(await http.get(url)).status_code for _ in range(3)]
        refused = await http.get(url)
        clock.now += 60
        later = await http.get(url)
    assert unknown.status_code == 400
    assert statuses == [200, 200, 429]
    assert refused.headers["retry-after"].isdigit()
    assert "temporarily_unavailable" in refused.text
    assert later.status_code == 200


async def test_registrations_beyond_the_limit_wait_for_the_next_minute(idp: IdP) -> None:
    clock = Clock()
    body = {"redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none"}
    async with (
        serving(idp, clock, registration={"max_per_minute": 2}) as base,
        httpx.AsyncClient(timeout=10) as http,
    ):
        statuses = [(await http.post(f"{base}/oauth/register", json=body)).status_code for _ in range(3)]
        clock.now += 60
        later = await http.post(f"{base}/oauth/register", json=body)
    assert statuses == [201, 201, 429]
    assert later.status_code == 201
