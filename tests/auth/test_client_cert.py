"""mTLS principals: ``mcplane run --tls-client-ca ...`` with ``auth.client_certificate``, the
certificate's name reaching the tool (HTTP and WebSocket) and authorization by its roles;
a missing certificate refused by the auth layer, revoked and expired ones by the handshake.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from mcplane import Forbidden
from mcplane.auth import AuthConfig, AuthenticationFailed, Authenticator, ClientCertificateAuth, hash_api_key
from mcplane.auth.config import APIKey
from mcplane.client import Client
from mcplane.tls import client_context
from tests.test_tls import CA, NOW, Issued, start_tls_server

APP = Path(__file__).resolve().parent / "client_cert_app.py"
CONFIG = """\
auth:
  required: true
  client_certificate:
    required: true
    principal_from: subject_cn
    roles: {agent-1: [deployer]}
"""


@dataclass
class Served:
    port: int
    ca: CA
    ca_file: Path
    tmp: Path
    revoked: Issued

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}/mcp"

    def files(self, issued: Issued, name: str) -> tuple[Path, Path]:
        return issued.write(self.tmp, name)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One server: client certificates optional at the TLS layer (so the auth layer's refusal
    shows), a CRL revoking one of them, the auth section above."""
    tmp = tmp_path_factory.mktemp("client-cert")
    ca = CA("client-cert test CA")
    revoked = ca.issue("revoked-agent", client=True)
    ca_file = tmp / "ca.pem"
    ca_file.write_bytes(ca.pem)
    crl = tmp / "clients.crl"
    crl.write_bytes(ca.crl([revoked]))
    config = tmp / "mcplane.yaml"
    config.write_text(CONFIG)
    flags = ["--tls-client-ca", str(ca_file), "--tls-crl", str(crl), "--tls-client-cert", "optional"]
    server = start_tls_server(APP, ca, tmp, "--config", str(config), *flags)
    try:
        yield Served(server.port, ca, ca_file, tmp, revoked)
    finally:
        server.stop()


async def test_the_certificate_is_the_principal(served: Served) -> None:
    agent = served.ca.issue("agent-1", client=True)
    cert, key = served.files(agent, "agent-1")
    async with Client(served.url, ca=served.ca_file, cert=cert, key=key) as client:
        result = await client.call_tool("whoami", {})
        assert result.structured_content == {
            "subject": "agent-1",
            "roles": ["deployer"],
            "auth": "mtls",
            "serial": format(agent.cert.serial_number, "x"),
        }
        deployed = await client.call_tool("deploy", {"service": "billing"})
    assert deployed.structured_content == {"result": "deployed billing"}


async def test_authorization_goes_by_the_certificates_roles(served: Served) -> None:
    cert, key = served.files(served.ca.issue("agent-2", client=True), "agent-2")
    async with Client(served.url, ca=served.ca_file, cert=cert, key=key) as client:
        whoami = await client.call_tool("whoami", {})
        assert whoami.structured_content is not None
        assert (whoami.structured_content["subject"], whoami.structured_content["roles"]) == ("agent-2", [])
        with pytest.raises(Forbidden):
            await client.call_tool("deploy", {"service": "billing"}, retry=False)


async def test_the_certificate_reaches_websocket_sessions(served: Served) -> None:
    cert, key = served.files(served.ca.issue("agent-1", client=True), "agent-ws")
    async with Client(f"wss://localhost:{served.port}/mcp", ca=served.ca_file, cert=cert, key=key) as client:
        result = await client.call_tool("whoami", {})
    assert result.structured_content is not None
    assert result.structured_content["subject"] == "agent-1"


async def test_no_certificate_is_unauthenticated(served: Served) -> None:
    verify = client_context(ca=served.ca_file)
    async with httpx.AsyncClient(verify=verify) as http:
        response = await http.post(
            served.url,
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}},
            headers={"accept": "application/json, text/event-stream", "mcp-protocol-version": "2025-11-25"},
        )
    assert response.status_code == 401
    error = response.json()["error"]["data"]
    assert (error["code"], error["details"]) == ("unauthenticated", {"reason": "missing_certificate"})
    with pytest.raises(InvalidStatus) as refused:
        async with connect(
            f"wss://localhost:{served.port}/mcp", ssl=verify, subprotocols=[Subprotocol("mcp")], open_timeout=10
        ):
            pytest.fail("the WebSocket handshake was accepted without a certificate")
    assert refused.value.response.status_code == 403


async def _refused_handshake(served: Served, issued: Issued, name: str) -> None:
    cert, key = served.files(issued, name)
    async with httpx.AsyncClient(verify=client_context(ca=served.ca_file, cert=cert, key=key)) as http:
        with pytest.raises(httpx.TransportError):
            await http.get(f"https://localhost:{served.port}/health")


async def test_a_revoked_certificate_is_refused_by_the_handshake(served: Served) -> None:
    await _refused_handshake(served, served.revoked, "revoked")


async def test_an_expired_certificate_is_refused_by_the_handshake(served: Served) -> None:
    expired = served.ca.issue("agent-1", client=True, not_after=NOW - dt.timedelta(hours=1))
    await _refused_handshake(served, expired, "expired")


# ------------------------------------------------------------------ the authenticator alone
def _pem(issued: Issued) -> str:
    return issued.cert.public_bytes(serialization.Encoding.PEM).decode()


async def test_the_subject_comes_from_the_configured_name() -> None:
    ca = CA("names")
    agent = _pem(ca.issue("agent-9", client=True, dns=["agent-9.internal"], uris=["spiffe://example.org/agent/9"]))
    expected = {"subject_cn": "agent-9", "san_dns": "agent-9.internal", "san_uri": "spiffe://example.org/agent/9"}
    for how, subject in expected.items():
        auth = Authenticator(
            AuthConfig(
                client_certificate=ClientCertificateAuth(
                    principal_from=how,  # pyright: ignore[reportArgumentType]
                    roles={subject: ["ops"], "*": ["agent"]},
                    scopes={"*": ["tools.read"]},
                )
            )
        )
        principal = await auth.authenticate({}, certificate=agent)
        assert (principal.subject, principal.roles, principal.scopes) == (
            subject,
            frozenset({"ops", "agent"}),
            frozenset({"tools.read"}),
        )
        assert await auth.authenticate({}, certificate=agent) is principal  # mapped once
    san_less = Authenticator(AuthConfig(client_certificate=ClientCertificateAuth(principal_from="san_uri")))
    with pytest.raises(AuthenticationFailed) as caught:
        await san_less.authenticate({}, certificate=_pem(ca.issue("agent-10", client=True)))
    assert caught.value.reason == "invalid_certificate"


async def test_a_token_names_the_caller_but_a_required_certificate_is_still_required() -> None:
    key = "mcp_test_key_for_client_cert_tests_0123456789"
    config = AuthConfig(
        api_keys=[APIKey(hash=hash_api_key(key), subject="ci-bot")],
        client_certificate=ClientCertificateAuth(required=True),
    )
    auth = Authenticator(config)
    agent = _pem(CA("token").issue("agent-3", client=True))
    assert (await auth.authenticate({"x-api-key": key}, certificate=agent)).subject == "ci-bot"
    assert (await auth.authenticate({}, certificate=agent)).subject == "agent-3"
    with pytest.raises(AuthenticationFailed) as caught:
        await auth.authenticate({"x-api-key": key})
    assert caught.value.reason == "missing_certificate"
    optional = Authenticator(AuthConfig(required=False, client_certificate=ClientCertificateAuth()))
    assert (await optional.authenticate({})).anonymous
