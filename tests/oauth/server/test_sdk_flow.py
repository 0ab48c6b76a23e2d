"""The official Python SDK client logs in through mcplane (``mcp.client.auth.OAuthClientProvider``):
discovery from the 401, dynamic registration, consent, the sign-in at the identity provider,
the code with PKCE and ``iss``, then ``tools/call`` with the token; in both protocol eras."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

from tests.conftest import free_port, mcplane_command
from tests.oauth.conftest import IdP
from tests.oauth.server.conftest import APP, Browser, Plant, as_config, query_of, secrets_in, start_as, write_keys

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


@pytest.fixture(scope="module")
def gateway(idp: IdP, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plant]:
    """``mcplane gateway`` as the authorization server, fronting the test plane over stdio."""
    tmp_path = tmp_path_factory.mktemp("oauth-gateway")
    port = free_port()
    login_client = idp.register_client([f"http://127.0.0.1:{port}/oauth/callback"])
    config = as_config(port, idp, login_client, write_keys(tmp_path / "keys"))
    command = mcplane_command("run", str(APP))
    config["upstreams"] = {"plane": {"endpoints": [{"command": command[0], "args": command[1:]}]}}
    config["authorization"] = {"default": "deny", "tools": {"plane__*": {"roles": ["admin"]}}}
    server = start_as(config, port, tmp_path, name="gateway", gateway=True)
    try:
        yield Plant(server, idp, config)
    finally:
        server.stop()


async def log_in_and_call(
    plant: Plant, mode: str, tool: str, answer: str = "alice roles=['admin']"
) -> tuple[MemoryTokens, Browser, list[str]]:
    server = plant.server
    browser = Browser(plant.idp, user="alice")
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
                result = await client.call_tool(tool, {})
                text = result.content[0].text  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType]
                assert not result.is_error, text
                assert text.startswith(answer), text
    finally:
        await browser.aclose()
    return storage, browser, redirected


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_the_sdk_client_logs_in_and_calls_a_tool(authorization_server: Plant, mode: str) -> None:
    server = authorization_server.server
    storage, browser, redirected = await log_in_and_call(authorization_server, mode, "whoami")
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


async def test_the_gateway_is_the_authorization_server_too(gateway: Plant) -> None:
    # The gateway maps the token (alice is an admin, as its rule requires); the upstream, over stdio,
    # is a plane of its own that sees no caller.
    storage, _, _ = await log_in_and_call(gateway, "2026-07-28", "plane__whoami", answer="anonymous")
    assert storage.tokens is not None
