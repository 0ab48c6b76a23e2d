"""The test identity provider itself: a login through its pages gives a code, and the code a token."""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import jwt

from tests.oauth.conftest import IdP, pkce_pair


async def test_a_login_through_the_pages_gives_a_code_that_gives_an_id_token(idp: IdP) -> None:
    redirect_uri = "http://127.0.0.1:9/callback"
    client_id, client_secret = idp.register_client([redirect_uri])
    assert client_secret
    verifier, challenge = pkce_pair()
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": "openid email profile",
        "state": "s-1",
        "nonce": "n-1",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    callback = await idp.login(f"{idp.issuer}/auth?{urlencode(query)}", user="alice")
    assert callback.startswith(redirect_uri)
    back = parse_qs(urlsplit(callback).query)
    assert back["state"] == ["s-1"]
    assert back["iss"] == [idp.issuer]
    form = {"grant_type": "authorization_code", "code": back["code"][0], "redirect_uri": redirect_uri}
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            f"{idp.issuer}/token", data={**form, "code_verifier": verifier}, auth=(client_id, client_secret)
        )
    assert answer.status_code == 200, answer.text
    claims = jwt.decode(answer.json()["id_token"], options={"verify_signature": False})
    assert claims["sub"] == "alice"
    assert claims["roles"] == ["admin"]
    assert claims["nonce"] == "n-1"


async def test_pkce_is_required(idp: IdP) -> None:
    redirect_uri = "http://127.0.0.1:9/callback"
    client_id, _ = idp.register_client([redirect_uri])
    query = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "scope": "openid"}
    callback = await idp.login(f"{idp.issuer}/auth?{urlencode(query)}")
    assert parse_qs(urlsplit(callback).query)["error"] == ["invalid_request"]
