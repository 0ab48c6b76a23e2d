"""The official Python SDK client logs in through mcplane (``mcp.client.auth.OAuthClientProvider``):
discovery from the 401, dynamic registration, consent, the sign-in at the identity provider,
the code with PKCE and ``iss``, then ``tools/call`` with the token; in both protocol eras."""

from __future__ import annotations

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

from tests.oauth.server.conftest import Browser, Plant, query_of, secrets_in

REDIRECT_URI = "http://127.0.0.1:9/callback"


class MemoryTokens:
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_the_sdk_client_logs_in_and_calls_a_tool(authorization_server: Plant, mode: str) -> None:
    server = authorization_server.server
    browser = Browser(authorization_server.idp, user="alice")
    redirected: list[str] = []

    async def redirect_handler(url: str) -> None:
        redirected.append(url)

    async def callback_handler() -> AuthorizationCodeResult:
        final = await browser.authorize(redirected[-1])
        assert final.startswith(REDIRECT_URI)
        back = query_of(final)
        return AuthorizationCodeResult(code=back["code"], state=back.get("state"), iss=back.get("iss"))

    storage = MemoryTokens()
    provider = OAuthClientProvider(
        server.url,
        OAuthClientMetadata(redirect_uris=[REDIRECT_URI], client_name="SDK <test> client"),  # pyright: ignore[reportArgumentType]
        storage,
        redirect_handler=redirect_handler,
        callback_handler=callback_handler,
    )
    try:
        with anyio.fail_after(60):
            async with (
                httpx2.AsyncClient(auth=provider, timeout=30) as http,
                Client(streamable_http_client(server.url, http_client=http), mode=mode) as client,  # type: ignore[arg-type]
            ):
                result = await client.call_tool("whoami", {})
                text = result.content[0].text  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType]
                assert text.startswith("alice roles=['admin']"), text
    finally:
        await browser.aclose()
    assert storage.tokens is not None
    assert storage.tokens.refresh_token
    assert len(redirected) == 1
    authorize = query_of(redirected[0])
    assert authorize["code_challenge_method"] == "S256"
    assert authorize["resource"] == server.url
    # Nothing secret reached the server's log: not the codes, states, tokens nor the client secret.
    log = server.stderr()
    assert "oauth authorization granted" in log  # the log was captured at all
    values = [*browser.seen, storage.tokens.access_token, storage.tokens.refresh_token]
    if storage.client is not None and storage.client.client_secret:
        values.append(storage.client.client_secret)
    for secret in secrets_in(values):
        assert secret not in log
