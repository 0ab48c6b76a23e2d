"""The caller's identity per upstream (``identity:``), against real upstream processes that echo
what they received: forwarded bearer tokens, principal headers, ``_meta`` over stdio, none."""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import AsyncGenerator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from mcplane.errors import ConfigError
from mcplane.gateway import Gateway, parse_gateway_config
from tests.auth.auth_support import AUDIENCE, HS_SECRET, ISSUER, mint
from tests.conftest import REPO_ROOT, ServerProcess, start_server
from tests.serving import ReadyServer

AUTH = {"resource": AUDIENCE, "jwt": {"issuer": ISSUER, "keys": [{"secret": HS_SECRET}]}}


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[ServerProcess]:
    from tests.gateway.conftest import UPSTREAM_APP

    server = start_server(UPSTREAM_APP, tmp_path=tmp_path)
    yield server
    server.stop()


@asynccontextmanager
async def gateway(upstreams: dict[str, Any]) -> AsyncGenerator[str]:
    """A gateway with bearer-token authentication served by uvicorn; yields its /mcp URL."""
    plane = Gateway.from_config({"auth": AUTH, "upstreams": upstreams})
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = ReadyServer(uvicorn.Config(plane.http_app(), lifespan="on", log_level="warning"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        with anyio.fail_after(20):
            await server.ready.wait()
        try:
            yield f"http://127.0.0.1:{port}/mcp"
        finally:
            server.should_exit = True
    sock.close()


async def _identity(url: str, subject: str, roles: list[str], *, tool: str = "up__identity") -> dict[str, Any]:
    token = mint(HS_SECRET, "HS256", sub=subject, roles=roles)
    async with (
        httpx2.AsyncClient(headers={"authorization": f"Bearer {token}"}) as http,
        Client(streamable_http_client(url, http_client=http), mode="legacy") as client,
    ):
        result = await client.call_tool(tool, {})
        assert not result.is_error, result
        body: Any = result.structured_content
        return {**body, "token": token}


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_forward_passes_each_callers_token_over_one_session(upstream: ServerProcess, mode: str) -> None:
    config = {"up": {"endpoints": [{"url": upstream.url}], "identity": "forward", "mode": mode}}
    async with gateway(config) as url:
        seen: dict[str, dict[str, Any]] = {}

        async def call(subject: str) -> None:
            seen[subject] = await _identity(url, subject, [])

        async with anyio.create_task_group() as tg:  # two callers at once on the one upstream session
            for subject in ("alice", "bob"):
                tg.start_soon(call, subject)
    for found in seen.values():
        assert found["authorization"] == f"Bearer {found['token']}"
        assert found["principal"] is None


async def test_principal_header_sends_subject_and_roles(upstream: ServerProcess) -> None:
    config = {"up": {"endpoints": [{"url": upstream.url}], "identity": {"mode": "principal_header"}}}
    async with gateway(config) as url:
        found = await _identity(url, "alice@example.com", ["billing", "admin"])
    assert found["principal"] == "alice@example.com"
    assert found["roles"] == "admin,billing"
    assert found["authorization"] is None  # the caller's token itself does not travel


async def test_none_sends_only_the_gateways_own_credentials(upstream: ServerProcess) -> None:
    config = {"up": {"endpoints": [{"url": upstream.url}], "headers": {"Authorization": "Bearer gateway-key"}}}
    async with gateway(config) as url:
        found = await _identity(url, "alice", ["billing"])
    assert found["authorization"] == "Bearer gateway-key"
    assert found["principal"] is None
    assert found["meta"] is None


async def test_meta_carries_the_principal_to_a_stdio_upstream() -> None:
    from tests.gateway.conftest import UPSTREAM_APP

    command = {
        "command": sys.executable,
        "args": ["-m", "mcplane.cli", "run", str(UPSTREAM_APP)],
        "cwd": str(REPO_ROOT),
    }
    async with gateway({"up": {"endpoints": [command], "identity": "meta"}}) as url:
        found = await _identity(url, "alice", ["billing"])
    assert json.loads(found["meta"]) == {"subject": "alice", "roles": ["billing"], "tenant": None}


@pytest.mark.parametrize(
    ("upstream_config", "message"),
    [
        ({"endpoints": [{"url": "http://10.0.0.5/mcp"}], "identity": "forward"}, "https://"),
        ({"endpoints": [{"url": "ws://127.0.0.1:9/mcp"}], "identity": "principal_header"}, "WebSocket"),
        ({"endpoints": [{"command": "x"}], "identity": "forward"}, "stdio can carry identity: meta"),
        (
            {"endpoints": [{"url": "https://a/mcp"}], "identity": "forward", "headers": {"authorization": "Bearer k"}},
            "exclude each other",
        ),
        ({"endpoints": [{"url": "https://a/mcp"}], "identity": "sometimes"}, "identity"),
    ],
)
def test_identity_refused_where_it_cannot_travel_safely(upstream_config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_gateway_config({"upstreams": {"up": upstream_config}})


def test_identity_accepted_over_tls_and_loopback() -> None:
    for url in ("https://api.example.com/mcp", "http://127.0.0.1:9/mcp", "http://localhost/mcp", "http://[::1]/mcp"):
        config = parse_gateway_config({"upstreams": {"up": {"endpoints": [{"url": url}], "identity": "forward"}}})
        assert config.upstreams["up"].identity.mode == "forward"
    assert (
        parse_gateway_config({"upstreams": {"up": {"endpoints": [{"url": "https://a"}]}}}).upstreams["up"].identity.mode
        == "none"
    )
