"""One real ``mcplane run`` server for the deploy tests that need one (metrics, probes, HEALTHCHECK)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import QUICKSTART, ServerProcess, start_server

POD_IP_HOST = "10.1.2.3:8000"
"""The Host header of a kubelet probe or a Prometheus scrape: the pod's IP, in no allow-list."""


@pytest.fixture(scope="session")
def deploy_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The quickstart server with every layer that has metrics installed, and a Host allow-list."""
    tmp_path = tmp_path_factory.mktemp("deploy-server")
    config = tmp_path / "mcplane.yaml"
    config.write_text(
        "http:\n"
        '  allowed_hosts: ["127.0.0.1:*", mcp.example.com]\n'
        "rate_limit:\n"
        "  default: 10000/minute\n"
        "cache:\n"
        "  enabled: true\n"
        "budget:\n"
        "  limit: 1000000\n"
        "audit:\n"
        "  sink: file\n"
        f"  path: {tmp_path / 'audit.jsonl'}\n"
        "  fsync: never\n"
    )
    server = start_server(QUICKSTART, tmp_path=tmp_path, extra_args=["--config", str(config)])
    yield server
    server.stop()
