"""Two ``mcplane run`` replicas sharing Redis: a flow begun on one completes on the other, a
refresh works on either, and of two concurrent redemptions of one code exactly one wins."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from urllib.parse import urlencode, urljoin, urlsplit

import anyio
import httpx
import pytest

from tests.conftest import free_port
from tests.oauth.conftest import IdP, pkce_pair
from tests.oauth.server.conftest import (
    AS,
    REDIS_URL,
    Browser,
    as_config,
    consent_form,
    query_of,
    start_as,
    write_keys,
)

REDIRECT_URI = "http://127.0.0.1:9/callback"


@pytest.fixture(scope="module")
def replicas(idp: IdP, tmp_path_factory: pytest.TempPathFactory, redis_key_prefix: str) -> Iterator[tuple[AS, AS]]:
    tmp_path = tmp_path_factory.mktemp("oauth-replicas")
    first, second = free_port(), free_port()
    login_client = idp.register_client([f"http://127.0.0.1:{first}/oauth/callback"])
    keys = write_keys(tmp_path / "keys")
    started: list[AS] = []
    try:
        for port in (first, second):
            config = as_config(
                port, idp, login_client, keys, issuer_port=first, redis_url=REDIS_URL, key_prefix=redis_key_prefix
            )
            started.append(start_as(config, port, tmp_path, name=f"replica-{port}"))
        yield started[0], started[1]
    finally:
        for server in started:
            server.stop()


def _on(url: str, server: AS) -> str:
    """The same URL on another replica (what a load balancer does)."""
    return urlsplit(url)._replace(netloc=f"127.0.0.1:{server.port}").geturl()


async def test_a_flow_begun_on_one_replica_completes_on_the_other(replicas: tuple[AS, AS], idp: IdP) -> None:
    one, two = replicas
    verifier, challenge = pkce_pair()
    async with httpx.AsyncClient(timeout=10) as http:
        registered = await http.post(
            f"{one.base}/oauth/register", json={"redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none"}
        )
        client_id = registered.json()["client_id"]
        query = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": REDIRECT_URI,
            "state": "s-replica",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        browser = Browser(idp)
        try:
            page = await browser.http.get(f"{one.base}/oauth/authorize?{urlencode(query)}")  # on one
            assert page.status_code == 200, page.text
            action, fields = consent_form(page.text)
            consent = await browser.http.post(
                urljoin(two.base, action), data={**fields, "decision": "allow"}
            )  # answered on two
            assert consent.status_code == 303, consent.text
            callback = await idp.login(consent.headers["location"])
            back = await browser.http.get(_on(callback, two))  # the provider's answer reaches two
            assert back.status_code == 303, back.text
        finally:
            await browser.aclose()
        code = query_of(back.headers["location"])["code"]
        form = {
            "grant_type": "authorization_code",
            "client_id": client_id,
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        }
        tokens = (await http.post(f"{one.base}/oauth/token", data=form)).json()  # redeemed on one
        refreshed = await http.post(
            f"{two.base}/oauth/token",
            data={"grant_type": "refresh_token", "client_id": client_id, "refresh_token": tokens["refresh_token"]},
        )  # refreshed on two
        assert refreshed.status_code == 200, refreshed.text
        for server in (one, two):  # both accept the token
            answer = await http.post(
                server.url,
                json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                headers={
                    "authorization": f"Bearer {refreshed.json()['access_token']}",
                    "accept": "application/json, text/event-stream",
                    "mcp-protocol-version": "2025-11-25",
                },
            )
            assert answer.status_code != 401, answer.text


async def test_concurrent_redemptions_of_one_code_one_wins(replicas: tuple[AS, AS], idp: IdP) -> None:
    one, two = replicas
    verifier, challenge = pkce_pair()
    async with httpx.AsyncClient(timeout=10) as http:
        registered = await http.post(
            f"{one.base}/oauth/register", json={"redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none"}
        )
        client_id = registered.json()["client_id"]
        query = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": REDIRECT_URI,
            "state": secrets.token_urlsafe(8),
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        browser = Browser(idp)
        try:
            final = await browser.authorize(f"{one.base}/oauth/authorize?{urlencode(query)}")
        finally:
            await browser.aclose()
        form = {
            "grant_type": "authorization_code",
            "client_id": client_id,
            "code": query_of(final)["code"],
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        }
        statuses: list[int] = []

        async def redeem(server: AS) -> None:
            statuses.append((await http.post(f"{server.base}/oauth/token", data=form)).status_code)

        async with anyio.create_task_group() as group:
            for server in (one, two, one, two):
                group.start_soon(redeem, server)
    assert sorted(statuses) == [200, 400, 400, 400]
