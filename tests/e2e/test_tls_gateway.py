"""TLS between the gateway and its upstreams, and ``mcplane gateway --tls-*`` serving HTTPS.

The upstream is ``mcplane run tests/gateway/upstream_app.py`` over HTTPS/WSS requiring a client
certificate (mTLS) from a throwaway CA.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from mcp import Client as SDKClient

from mcplane.client import Client
from mcplane.gateway import Gateway
from mcplane.tls import clear_client_contexts, client_context_cache_info, load_certificate
from tests.conftest import error_of
from tests.gateway.conftest import UPSTREAM_APP, error_code, text_of
from tests.test_tls import CA, start_tls_server, trusting


@dataclass
class Upstream:
    port: int
    ca: Path
    wrong_ca: Path
    cert: Path
    key: Path
    tmp: Path

    def tls(self, **overrides: Any) -> dict[str, Any]:
        return {"ca": str(self.ca), "cert": str(self.cert), "key": str(self.key), **overrides}

    def upstream(self, tls: dict[str, Any] | None, *, schemes: tuple[str, ...] = ("https",)) -> dict[str, Any]:
        endpoints = [{"url": f"{scheme}://localhost:{self.port}/mcp"} for scheme in schemes]
        config: dict[str, Any] = {
            "endpoints": endpoints,
            "connect_timeout": "10s",
            "restart": {"initial": "100ms", "max": "500ms"},
            "retries": {"attempts": 1},
        }
        if tls is not None:
            config["tls"] = tls
        return config


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    tmp = tmp_path_factory.mktemp("tls-upstream")
    ca = CA("upstream CA")
    ca_file, wrong = tmp / "ca.pem", tmp / "wrong-ca.pem"
    ca_file.write_bytes(ca.pem)
    wrong.write_bytes(CA("not the upstream's CA").pem)
    gateway_identity = ca.issue("gateway", client=True)
    cert, key = gateway_identity.write(tmp, "gateway")
    health = trusting(ca)
    load_certificate(health, gateway_identity.cert_pem, gateway_identity.key_pem)
    server = start_tls_server(UPSTREAM_APP, ca, tmp, "--tls-client-ca", str(ca_file), health_context=health)
    try:
        yield Upstream(server.port, ca_file, wrong, cert, key, tmp)
    finally:
        server.stop()


def _gateway(upstreams: dict[str, Any]) -> Any:
    return Gateway.from_config({"server": {"default_timeout": "20s"}, "upstreams": upstreams})


async def test_https_and_wss_upstreams_with_a_custom_ca_and_a_client_certificate(upstream: Upstream) -> None:
    clear_client_contexts()
    plane = _gateway({"up": upstream.upstream(upstream.tls(), schemes=("https", "wss"))})
    endpoints = Gateway.provider_of(plane).upstreams["up"].endpoints
    async with SDKClient(plane.sdk, mode="legacy") as client:
        for n in range(6):  # round robin: both endpoints serve calls
            result = await client.call_tool("up__add", {"a": n, "b": 1})
            assert text_of(result) == str(n + 1), result
    assert [endpoint.connections for endpoint in endpoints] == [1, 1]
    info = client_context_cache_info()
    assert info.misses == 1  # one context for the upstream's config: shared by both endpoints
    assert info.hits >= 1


async def _unavailable(upstream: Upstream, tls: dict[str, Any], caplog: pytest.LogCaptureFixture) -> str:
    """Why the upstream ``bad`` (with ``tls``) is down, seen three ways: its health, the error a
    call needing it gets (through ``depends_on``), and the connection failure logged."""
    good = {**upstream.upstream(upstream.tls()), "depends_on": {"add": ["bad"]}}
    plane = _gateway({"good": good, "bad": upstream.upstream(tls)})
    async with SDKClient(plane.sdk, mode="legacy") as client:
        bad = Gateway.provider_of(plane).upstreams["bad"]
        assert await bad.health() == (False, "not connected")
        assert bad.unavailable().code == "dependency_unavailable"
        result = await client.call_tool("good__add", {"a": 1, "b": 1})
        assert error_code(result) == "dependency_unavailable"
        assert error_of(result)["details"] == {"dependency": "bad"}
    return next(r.getMessage() for r in caplog.records if r.getMessage().startswith("upstream bad[0]"))


async def test_a_wrong_ca_makes_the_upstream_unavailable(upstream: Upstream, caplog: pytest.LogCaptureFixture) -> None:
    logged = await _unavailable(upstream, upstream.tls(ca=str(upstream.wrong_ca)), caplog)
    assert "CERTIFICATE_VERIFY_FAILED" in logged


async def test_no_client_certificate_for_an_mtls_upstream(upstream: Upstream, caplog: pytest.LogCaptureFixture) -> None:
    logged = await _unavailable(upstream, {"ca": str(upstream.ca)}, caplog)
    assert "connection failed" in logged


async def test_server_name_verifies_an_upstream_reached_by_address(upstream: Upstream) -> None:
    by_address = {"endpoints": [{"url": f"https://127.0.0.1:{upstream.port}/mcp"}], "retries": {"attempts": 1}}
    named = _gateway({"up": {**by_address, "tls": upstream.tls(server_name="localhost")}})
    async with SDKClient(named.sdk, mode="legacy") as client:
        assert text_of(await client.call_tool("up__add", {"a": 2, "b": 2})) == "4"
    unnamed = _gateway({"up": {**by_address, "tls": upstream.tls()}})
    async with SDKClient(unnamed.sdk, mode="legacy"):  # the certificate names localhost only
        assert await Gateway.provider_of(unnamed).upstreams["up"].health() == (False, "not connected")


def test_upstream_tls_config_is_checked() -> None:
    from mcplane.errors import ConfigError

    with pytest.raises(ConfigError, match="tls applies to https:// and wss:// endpoints only"):
        _gateway({"up": {"endpoints": [{"url": "http://localhost:1/mcp"}], "tls": {"ca": "ca.pem"}}})
    with pytest.raises(ConfigError, match="key needs cert"):
        _gateway({"up": {"endpoints": [{"url": "https://localhost:1/mcp"}], "tls": {"key": "k.pem"}}})
    with pytest.raises(ConfigError, match="verify: false"):
        _gateway({"up": {"endpoints": [{"url": "https://localhost:1/mcp"}], "tls": {"verify": False, "ca": "c"}}})


async def test_mcplane_gateway_serves_https(upstream: Upstream, tmp_path: Path) -> None:
    front = CA("gateway front CA")
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump({"upstreams": {"up": upstream.upstream(upstream.tls())}}))
    served = start_tls_server(config, front, tmp_path, gateway=True)
    try:
        async with Client(served.url, ca=front.pem) as client:
            result = await client.call_tool("up__add", {"a": 40, "b": 2})
        assert text_of(result) == "42"
    finally:
        served.stop()
