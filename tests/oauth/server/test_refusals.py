"""Bad input at every endpoint, each refused with the RFC's error code, over real HTTP."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from pathlib import Path
from urllib.parse import urlencode

import anyio
import httpx
import jwt
import pytest

from tests.oauth.conftest import pkce_pair
from tests.oauth.server.conftest import API_KEY, Browser, Plant, consent_form, query_of

REDIRECT_URI = "http://127.0.0.1:9/callback"


async def _register(http: httpx.AsyncClient, base: str, **extra: object) -> dict[str, str]:
    body = {"redirect_uris": [REDIRECT_URI], "client_name": "test client", "token_endpoint_auth_method": "none"}
    answer = await http.post(f"{base}/oauth/register", json={**body, **extra})
    assert answer.status_code == 201, answer.text
    return answer.json()


def _authorize_url(base: str, client_id: str, challenge: str, **extra: str) -> str:
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT_URI,
        "state": secrets.token_urlsafe(16),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "scope": "tools.read",
        **extra,
    }
    return f"{base}/oauth/authorize?{urlencode(query)}"


async def _code(plant: Plant, client_id: str, *, user: str = "alice") -> tuple[str, str]:
    """A fresh code for ``client_id`` and its PKCE verifier."""
    verifier, challenge = pkce_pair()
    browser = Browser(plant.idp, user=user)
    try:
        final = await browser.authorize(_authorize_url(plant.server.base, client_id, challenge))
    finally:
        await browser.aclose()
    back = query_of(final)
    assert back["iss"] == plant.server.issuer
    return back["code"], verifier


async def _redeem(http: httpx.AsyncClient, base: str, client_id: str, code: str, verifier: str) -> httpx.Response:
    form = {
        "grant_type": "authorization_code",
        "client_id": client_id,
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier,
    }
    return await http.post(f"{base}/oauth/token", data=form)


async def _refresh(http: httpx.AsyncClient, base: str, client_id: str, token: str) -> httpx.Response:
    form = {"grant_type": "refresh_token", "client_id": client_id, "refresh_token": token}
    return await http.post(f"{base}/oauth/token", data=form)


async def test_metadata_and_keys(authorization_server: Plant) -> None:
    base = authorization_server.server.base
    async with httpx.AsyncClient() as http:
        metadata = (await http.get(f"{base}/.well-known/oauth-authorization-server")).json()
        resource = (await http.get(f"{base}/.well-known/oauth-protected-resource/mcp")).json()
        keys = (await http.get(metadata["jwks_uri"])).json()["keys"]
    assert metadata["issuer"] == base
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert metadata["authorization_response_iss_parameter_supported"] is True
    assert metadata["client_id_metadata_document_supported"] is True
    assert resource["authorization_servers"] == [base]
    assert sorted(key["kid"] for key in keys) == ["current", "previous"]
    assert all(key["alg"] == "ES256" and "d" not in key for key in keys)


async def test_an_unregistered_client_and_a_wrong_redirect_uri_are_never_redirected_to(
    authorization_server: Plant,
) -> None:
    base = authorization_server.server.base
    _, challenge = pkce_pair()
    async with httpx.AsyncClient() as http:
        unknown = await http.get(_authorize_url(base, "mcp-nobody", challenge))
        client = await _register(http, base)
        wrong = await http.get(
            _authorize_url(base, client["client_id"], challenge, redirect_uri="https://evil.example/cb")
        )
        private = await http.get(_authorize_url(base, "https://169.254.169.254/latest/client.json", challenge))
        unknown_at_token = await _redeem(http, base, "mcp-nobody", "x" * 43, "y" * 43)
    assert unknown.status_code == 400
    assert "location" not in unknown.headers
    assert "invalid_client" in unknown.text
    assert wrong.status_code == 400
    assert "location" not in wrong.headers
    assert private.status_code == 400
    assert "private_address" in private.text
    assert unknown_at_token.status_code == 401
    assert unknown_at_token.json()["error"] == "invalid_client"


async def test_plain_pkce_a_missing_challenge_and_another_resource_are_refused(authorization_server: Plant) -> None:
    base = authorization_server.server.base
    async with httpx.AsyncClient() as http:
        client_id = (await _register(http, base))["client_id"]
        plain = await http.get(_authorize_url(base, client_id, "c" * 43, code_challenge_method="plain"))
        missing = await http.get(_authorize_url(base, client_id, "", code_challenge_method="S256"))
        other = await http.get(_authorize_url(base, client_id, "c" * 43, resource="https://other.example/mcp"))
        scope = await http.get(_authorize_url(base, client_id, "c" * 43, scope="admin.everything"))
    for answer, error in ((plain, "invalid_request"), (missing, "invalid_request"), (other, "invalid_target")):
        assert answer.status_code == 303
        back = query_of(answer.headers["location"])
        assert back["error"] == error
        assert back["iss"] == base
    assert query_of(scope.headers["location"])["error"] == "invalid_scope"


async def test_a_pkce_mismatch_a_replayed_code_and_refresh_rotation(authorization_server: Plant) -> None:
    plant = authorization_server
    base = plant.server.base
    async with httpx.AsyncClient() as http:
        client_id = (await _register(http, base))["client_id"]
        code, _ = await _code(plant, client_id)
        mismatch = await _redeem(http, base, client_id, code, pkce_pair()[0])
        assert mismatch.status_code == 400
        assert mismatch.json()["error"] == "invalid_grant"

        code, verifier = await _code(plant, client_id)
        first = await _redeem(http, base, client_id, code, verifier)
        assert first.status_code == 200, first.text
        tokens = first.json()
        assert first.headers["cache-control"] == "no-store"
        claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
        assert claims["aud"] == plant.server.url
        assert claims["iss"] == base
        assert claims["sub"] == "alice"
        assert tokens["scope"] == "tools.read"

        rotated = await _refresh(http, base, client_id, tokens["refresh_token"])
        assert rotated.status_code == 200, rotated.text
        newer = rotated.json()["refresh_token"]
        assert newer != tokens["refresh_token"]
        # The rotated-out token comes back: reuse, so the whole family is revoked.
        reused = await _refresh(http, base, client_id, tokens["refresh_token"])
        assert reused.status_code == 400
        assert reused.json()["error"] == "invalid_grant"
        after_reuse = await _refresh(http, base, client_id, newer)
        assert after_reuse.status_code == 400
        assert after_reuse.json()["error"] == "invalid_grant"

        # A replayed code is refused, and revokes what its first redemption granted.
        code, verifier = await _code(plant, client_id)
        granted = (await _redeem(http, base, client_id, code, verifier)).json()
        replay = await _redeem(http, base, client_id, code, verifier)
        assert replay.status_code == 400
        assert replay.json()["error"] == "invalid_grant"
        revoked = await _refresh(http, base, client_id, granted["refresh_token"])
        assert revoked.status_code == 400
        assert revoked.json()["error"] == "invalid_grant"


async def test_a_revoked_refresh_token_and_tokens_the_mcp_endpoint_refuses(
    authorization_server: Plant, tmp_path: Path
) -> None:
    plant = authorization_server
    base = plant.server.base
    async with httpx.AsyncClient() as http:
        client_id = (await _register(http, base))["client_id"]
        code, verifier = await _code(plant, client_id, user="bob")
        tokens = (await _redeem(http, base, client_id, code, verifier)).json()
        ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        headers = {"accept": "application/json, text/event-stream", "mcp-protocol-version": "2025-11-25"}
        good = await http.post(
            plant.server.url, json=ping, headers={**headers, "authorization": f"Bearer {tokens['access_token']}"}
        )
        assert good.status_code != 401, good.text

        revoke = await http.post(
            f"{base}/oauth/revoke", data={"client_id": client_id, "token": tokens["refresh_token"]}
        )
        assert revoke.status_code == 200
        after = await _refresh(http, base, client_id, tokens["refresh_token"])
        assert after.status_code == 400
        assert after.json()["error"] == "invalid_grant"

        # Signed with mcplane's own active key, but for another resource: refused by the auth layer.
        oauth = plant.config["oauth"]
        assert isinstance(oauth, dict)
        pem_path = Path(str(oauth["signing_keys"][0]["private_key"])[len("${file:") : -1])  # pyright: ignore[reportUnknownArgumentType]
        now = int(time.time())
        claims = {"iss": base, "sub": "alice", "aud": "https://other.example/mcp", "exp": now + 60, "iat": now}
        pem = await anyio.Path(pem_path).read_text()
        foreign = jwt.encode(claims, pem, algorithm="ES256", headers={"kid": "current"})
        refused = await http.post(
            plant.server.url, json=ping, headers={**headers, "authorization": f"Bearer {foreign}"}
        )
        assert refused.status_code == 401
        assert 'error="invalid_token"' in refused.headers["www-authenticate"]
        # Signed with the previous (still published) key for this resource: accepted.
        previous_path = Path(str(oauth["signing_keys"][1]["private_key"])[len("${file:") : -1])  # pyright: ignore[reportUnknownArgumentType]
        previous_pem = await anyio.Path(previous_path).read_text()
        claims = {**claims, "aud": plant.server.url}
        rotated = jwt.encode(claims, previous_pem, algorithm="ES256", headers={"kid": "previous"})
        accepted = await http.post(
            plant.server.url, json=ping, headers={**headers, "authorization": f"Bearer {rotated}"}
        )
        assert accepted.status_code != 401, accepted.text
        # Alongside: the provider's own token (auth.jwt) and an API key are still accepted.
        upstream = plant.idp.sign({"iss": plant.idp.issuer, "sub": "carol", "aud": plant.server.url, "exp": now + 60})
        for credential in ({"authorization": f"Bearer {upstream}"}, {"x-api-key": API_KEY}):
            alongside = await http.post(plant.server.url, json=ping, headers={**headers, **credential})
            assert alongside.status_code != 401, alongside.text
        # Well formed and signed, but naming an issuer this server does not trust.
        other = plant.idp.sign(
            {"iss": "https://unknown.example", "sub": "alice", "aud": plant.server.url, "exp": now + 60}
        )
        untrusted = await http.post(
            plant.server.url, json=ping, headers={**headers, "authorization": f"Bearer {other}"}
        )
        assert untrusted.status_code == 401


async def test_the_consent_page_escapes_and_checks_its_form(authorization_server: Plant) -> None:
    base = authorization_server.server.base
    _, challenge = pkce_pair()
    async with httpx.AsyncClient() as http:
        client_id = (await _register(http, base, client_name='<script>alert("x")</script>'))["client_id"]
        page = await http.get(_authorize_url(base, client_id, challenge))
        assert page.status_code == 200
        assert "<script>" not in page.text
        assert "&lt;script&gt;" in page.text
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        action, fields = consent_form(page.text)
        target = f"{base}{action}"
        forged = await http.post(target, data={**fields, "csrf": "forged", "decision": "allow"})
        assert forged.status_code == 400
        # The forged attempt used the request up: a new one, then a cross-site post of it.
        page = await http.get(_authorize_url(base, client_id, challenge))
        _, fields = consent_form(page.text)
        cross = await http.post(
            target, data={**fields, "decision": "allow"}, headers={"origin": "https://evil.example"}
        )
        assert cross.status_code == 403
        page = await http.get(_authorize_url(base, client_id, challenge))
        _, fields = consent_form(page.text)
    async with httpx.AsyncClient() as stranger:  # another browser (no cookie) with the page's values
        other = await stranger.post(target, data={**fields, "decision": "allow"})
        assert other.status_code == 400


@pytest.mark.parametrize("size", [100, 10_000])
async def test_client_id_metadata_documents(authorization_server: Plant, size: int) -> None:
    """A document on loopback (the test-only setting allows it): a small one is accepted, an
    oversized one refused (the server's cap is 4096 bytes)."""
    import socket
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    base = authorization_server.server.base
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    client_id = f"http://127.0.0.1:{port}/client.json"
    document = {
        "client_id": client_id,
        "client_name": "Doc & Client",
        "redirect_uris": [REDIRECT_URI],
        "token_endpoint_auth_method": "none",
        "padding": "x" * size,
    }
    import json

    body = json.dumps(document).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    httpd = HTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        _, challenge = pkce_pair()
        async with httpx.AsyncClient() as http:
            page = await http.get(_authorize_url(base, client_id, challenge))
    finally:
        httpd.shutdown()
        httpd.server_close()
    if size < 1000:
        assert page.status_code == 200, page.text
        assert "Doc &amp; Client" in page.text
    else:
        assert page.status_code == 400
        assert "too_large" in page.text


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
