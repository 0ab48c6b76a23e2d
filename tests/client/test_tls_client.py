"""The client over TLS against a real ``mcplane run --tls-cert ... --tls-client-ca``: the right CA
and a client certificate work (https and wss, ``Client`` and ``mcplane call``), a wrong CA is a
typed, non-retryable ``dependency_unavailable``, and contexts are shared, not built per call."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
from mcp import Client as SDKClient

from mcplane import ConfigError, DependencyUnavailable
from mcplane.client import Client
from mcplane.tls import client_context, client_context_cache_info, load_certificate
from mcplane.transports.websocket import websocket_client
from tests.conftest import QUICKSTART, REPO_ROOT, mcplane_command
from tests.test_tls import CA, start_tls_server, trusting


@dataclass
class Served:
    http: str
    ws: str
    ca: Path
    wrong_ca: Path
    cert: Path
    key: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The quickstart plane over HTTPS/WSS, requiring a client certificate from the same CA."""
    tmp = tmp_path_factory.mktemp("client-tls")
    ca = CA("client TLS test CA")
    ca_file, wrong = tmp / "ca.pem", tmp / "wrong-ca.pem"
    ca_file.write_bytes(ca.pem)
    wrong.write_bytes(CA("someone else").pem)
    agent = ca.issue("agent-cli", client=True)
    cert, key = agent.write(tmp, "agent")
    health = trusting(ca)
    load_certificate(health, agent.cert_pem, agent.key_pem)
    server = start_tls_server(QUICKSTART, ca, tmp, "--tls-client-ca", str(ca_file), health_context=health)
    try:
        yield Served(server.url, server.ws_url, ca_file, wrong, cert, key)
    finally:
        server.stop()


@pytest.mark.parametrize("scheme", ["http", "ws"])
async def test_the_right_ca_and_a_client_certificate(served: Served, scheme: str) -> None:
    url = served.http if scheme == "http" else served.ws
    async with Client(url, ca=served.ca, cert=served.cert, key=served.key) as client:
        result = await client.call_tool("add", {"a": 2, "b": 3})
    assert result.structured_content == {"result": 5}


@pytest.mark.parametrize("scheme", ["http", "ws"])
async def test_a_wrong_ca_is_a_typed_error(served: Served, scheme: str) -> None:
    url = served.http if scheme == "http" else served.ws
    with pytest.raises(DependencyUnavailable) as caught:
        async with Client(url, ca=served.wrong_ca, cert=served.cert, key=served.key):
            pytest.fail("connected to a server the CA does not vouch for")
    error = caught.value
    assert error.details == {"reason": "tls_untrusted_server"}
    assert error.retryable is False
    assert "certificate was not accepted" in error.message


async def test_without_a_client_certificate_the_server_refuses(served: Served) -> None:
    with pytest.raises((httpx2.TransportError, DependencyUnavailable)):
        async with Client(served.http, ca=served.ca):
            pytest.fail("connected without a client certificate")


async def test_websocket_client_takes_an_ssl_context(served: Served) -> None:
    context = client_context(ca=served.ca, cert=served.cert, key=served.key)
    async with SDKClient(websocket_client(served.ws, ssl=context)) as sdk:
        result = await sdk.call_tool("add", {"a": 1, "b": 1})
    assert result.structured_content == {"result": 2}


async def test_contexts_are_shared_not_built_per_call(served: Served) -> None:
    first = Client(served.http, ca=served.ca, cert=served.cert, key=served.key)
    second = Client(served.ws, ca=served.ca, cert=served.cert, key=served.key)
    assert first.tls is not None
    assert first.tls is second.tls
    builds = client_context_cache_info().misses
    async with first as client:
        for n in range(5):
            await client.call_tool("add", {"a": n, "b": 1})
    assert client_context_cache_info().misses == builds
    assert Client("https://example.com/mcp").tls is client_context()  # system CAs, shared too


async def test_tls_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="not both"):
        Client("https://example.com/mcp", tls=client_context(), ca="ca.pem")
    with pytest.raises(ConfigError, match="https:// and wss:// endpoints only"):
        Client("http://example.com/mcp", ca="ca.pem")
    with pytest.raises(ConfigError, match="wss:// URLs only"):
        async with websocket_client("ws://example.com/mcp", ssl=client_context()):
            pytest.fail("ssl= was taken for a ws:// URL")


def _call(served: Served, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        mcplane_command("call", served.http, "add", "--args", '{"a": 20, "b": 22}', *flags),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
    )


def test_mcplane_call_with_ca_cert_and_key(served: Served) -> None:
    done = _call(served, "--ca", str(served.ca), "--cert", str(served.cert), "--key", str(served.key))
    assert done.returncode == 0, done.stderr
    assert '"result": 42' in done.stdout


def test_mcplane_call_with_a_wrong_ca_is_one_line(served: Served) -> None:
    done = _call(served, "--ca", str(served.wrong_ca), "--cert", str(served.cert), "--key", str(served.key))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("mcplane: error: call failed: DependencyUnavailable: TLS: the server's certificate")
    assert len(done.stderr.strip().splitlines()) == 1
