"""Two replicas sharing Redis behind nginx (the test bed's template, round-robin, no stickiness):
the SDK client logs in through the load balancer, so consecutive steps of its flow land on
different replicas, then refreshes and calls."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from scripts.testbed_services import nginx_binary

from tests.conftest import REPO_ROOT, START_TIMEOUT, STOP_TIMEOUT, free_port
from tests.oauth.conftest import IdP
from tests.oauth.server.conftest import AS, REDIS_URL, Plant, as_config, start_as, write_keys
from tests.oauth.server.test_sdk_flow import MemoryTokens, log_in_and_call

NGINX_TEMPLATE = REPO_ROOT / "deploy" / "testbed" / "nginx.conf.template"
"""The test bed's load balancer (scripts/testbed.py fills the same placeholders)."""


def _render(workdir: Path, lb_port: int, replicas: list[AS]) -> str:
    servers = "\n".join(f"        server 127.0.0.1:{r.port} max_fails=1 fail_timeout=2s;" for r in replicas)
    values = {
        "user": "user root;" if os.geteuid() == 0 else "",
        "workdir": str(workdir),
        "servers": servers,
        "lb_port": str(lb_port),
    }
    text = NGINX_TEMPLATE.read_text()
    for name, value in values.items():
        text = text.replace(f"@@{name}@@", value)
    assert "@@" not in text
    return text


@pytest.fixture(scope="module")
def behind_nginx(
    idp: IdP, tmp_path_factory: pytest.TempPathFactory, redis_key_prefix: str
) -> Iterator[tuple[Plant, list[AS]]]:
    binary = nginx_binary()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("nginx is not installed; CI must run this test")
        pytest.skip("nginx is not installed (scripts/install-test-deps.sh installs it)")
    workdir = tmp_path_factory.mktemp("oauth-nginx")
    lb_port = free_port()
    login_client = idp.register_client([f"http://127.0.0.1:{lb_port}/oauth/callback"])
    keys = write_keys(workdir / "keys")
    replicas: list[AS] = []
    nginx: subprocess.Popen[bytes] | None = None
    try:
        config: dict[str, object] = {}
        for _ in range(2):
            port = free_port()
            config = as_config(
                port, idp, login_client, keys, issuer_port=lb_port, redis_url=REDIS_URL, key_prefix=redis_key_prefix
            )
            replicas.append(start_as(config, port, workdir, name="behind-nginx"))
        conf = workdir / "nginx.conf"
        conf.write_text(_render(workdir, lb_port, replicas))
        nginx = subprocess.Popen(
            [binary, "-p", str(workdir), "-c", str(conf), "-e", str(workdir / "nginx-error.log")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{lb_port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if nginx.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"nginx did not start: {(workdir / 'nginx-error.log').read_text(errors='replace')}")
            try:
                nginx.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                continue
        front = AS(nginx, lb_port, workdir / "nginx-error.log", f"http://127.0.0.1:{lb_port}")
        yield Plant(front, idp, config), replicas
    finally:
        if nginx is not None and nginx.poll() is None:
            nginx.send_signal(signal.SIGQUIT)
            try:
                nginx.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                nginx.kill()
                nginx.wait()
        for replica in replicas:
            replica.stop()


async def test_the_sdk_client_logs_in_through_nginx(behind_nginx: tuple[Plant, list[AS]]) -> None:
    front, replicas = behind_nginx
    storage, _, _ = await log_in_and_call(front, "2026-07-28", "whoami")
    assert isinstance(storage, MemoryTokens)
    assert storage.tokens is not None
    assert storage.tokens.refresh_token is not None
    async with httpx.AsyncClient(timeout=10) as http:
        assert storage.client is not None
        refreshed = await http.post(
            f"{front.server.base}/oauth/token",
            data={"grant_type": "refresh_token", "refresh_token": storage.tokens.refresh_token},
            auth=(storage.client.client_id, storage.client.client_secret or ""),
        )
    assert refreshed.status_code == 200, refreshed.text
    # Round-robin spread the flow's steps: both replicas served requests of the authorization server.
    assert all('"oauth request ' in replica.stderr() for replica in replicas)
