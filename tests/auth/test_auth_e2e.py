"""End to end over real uvicorn: AuthASGI in front of a Plane, the SDK client with a bearer token,
the principal reaching the tool through the authenticate slot, and the authorize slot refusing."""

from __future__ import annotations

import socket
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import httpx2
import pytest
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from pydantic import SecretStr
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from mcplane import Context, Plane
from mcplane.auth import (
    AccessPolicy,
    AccessRule,
    AuthASGI,
    AuthConfig,
    AuthenticateMiddleware,
    Authenticator,
    JWTConfig,
    StaticKey,
)
from mcplane.middleware.authorize import AuthorizeMiddleware
from mcplane.transports.websocket import websocket_client
from tests.auth.auth_support import AUDIENCE, HS_SECRET, ISSUER, mint
from tests.conftest import error_of
from tests.serving import ReadyServer

CONFIG = AuthConfig(resource=AUDIENCE, jwt=JWTConfig(issuer=ISSUER, keys=[StaticKey(secret=SecretStr(HS_SECRET))]))
POLICY = AccessPolicy(tools={"billing_*": AccessRule(roles=["billing"])})


def _plane() -> Plane:
    plane = Plane("auth-e2e")

    @plane.tool()
    def whoami(ctx: Context) -> str:
        return f"{ctx.principal.subject} {sorted(ctx.principal.roles)}"

    @plane.tool()
    def billing_charge(cents: int) -> str:
        return f"charged {cents}"

    plane.pipeline.set("authenticate", AuthenticateMiddleware(required=CONFIG.required))
    plane.pipeline.set("authorize", AuthorizeMiddleware(POLICY))
    return plane


@asynccontextmanager
async def serving() -> AsyncGenerator[str]:
    app = AuthASGI(_plane().http_app(), Authenticator(CONFIG))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = ReadyServer(uvicorn.Config(app, lifespan="on", log_level="warning", ws="websockets-sansio"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        with anyio.fail_after(10):
            await server.ready.wait()
        try:
            yield f"127.0.0.1:{port}"
        finally:
            server.should_exit = True
    sock.close()


def _text(result: Any) -> str:
    return result.content[0].text


async def test_streamable_http_with_a_bearer_token() -> None:
    async with serving() as base_url:
        token = mint(HS_SECRET, "HS256", sub="alice", roles=["billing"])
        async with httpx2.AsyncClient(headers={"authorization": f"Bearer {token}"}) as http:
            with anyio.fail_after(20):
                for mode in ("auto", "legacy"):
                    async with Client(
                        streamable_http_client(f"http://{base_url}/mcp", http_client=http), mode=mode
                    ) as c:
                        assert _text(await c.call_tool("whoami", {})) == "alice ['billing']"
                        assert _text(await c.call_tool("billing_charge", {"cents": 5})) == "charged 5"


async def test_the_authorize_slot_refuses_with_forbidden() -> None:
    async with serving() as base_url:
        token = mint(HS_SECRET, "HS256", sub="mallory")
        async with httpx2.AsyncClient(headers={"authorization": f"Bearer {token}"}) as http:
            with anyio.fail_after(20):
                async with Client(streamable_http_client(f"http://{base_url}/mcp", http_client=http)) as client:
                    result = await client.call_tool("billing_charge", {"cents": 5})
        assert result.is_error
        assert error_of(result)["code"] == "forbidden"


async def test_no_token_is_401_with_the_challenge() -> None:
    async with serving() as base_url:
        async with httpx.AsyncClient() as http:
            with anyio.fail_after(10):
                response = await http.post(f"http://{base_url}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
                metadata = await http.get(f"http://{base_url}/.well-known/oauth-protected-resource/mcp")
        assert response.status_code == 401
        assert "resource_metadata=" in response.headers["www-authenticate"]
        assert metadata.json()["resource"] == AUDIENCE


async def test_websocket_with_and_without_a_token() -> None:
    async with serving() as base_url:
        token = mint(HS_SECRET, "HS256", sub="wes", roles=["billing"])
        url = f"ws://{base_url}/mcp"
        with anyio.fail_after(20):
            async with Client(websocket_client(url, headers={"authorization": f"Bearer {token}"})) as client:
                assert _text(await client.call_tool("whoami", {})) == "wes ['billing']"
            # Refused before accept: the handshake itself fails (uvicorn turns the close into HTTP 403).
            with pytest.raises(InvalidStatus) as refused:
                async with connect(
                    url, subprotocols=[Subprotocol("mcp")], additional_headers={"authorization": "Bearer x"}
                ):
                    pass
            assert refused.value.response.status_code == 403
