"""``mcplane run --tls-cert/--tls-key``: HTTPS and WSS served, verified, refused with a wrong CA."""

from __future__ import annotations

import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from mcplane import Client
from mcplane.tls import clear_client_contexts, client_context
from tests.conftest import QUICKSTART, REPO_ROOT, free_port
from tests.test_tls import CA

_RUN = [sys.executable, "-m", "mcplane.cli", "run", str(QUICKSTART), "--transport", "http"]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path, Path]]:
    tmp = tmp_path_factory.mktemp("tls")
    authority = CA("mcplane run test CA")
    cert, key = authority.server("localhost").write(tmp, "server")
    ca_file = tmp / "ca.pem"
    ca_file.write_bytes(authority.pem)
    wrong = tmp / "wrong-ca.pem"
    wrong.write_bytes(CA("someone else").pem)
    port = free_port()
    stderr = (tmp / "stderr.log").open("wb")
    argv = [sys.executable, "-m", "mcplane.cli", "run", str(QUICKSTART), "--transport", "http", "--port", str(port)]
    proc = subprocess.Popen(
        [*argv, "--tls-cert", str(cert), "--tls-key", str(key)],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )
    try:
        verify = ssl.create_default_context(cafile=str(ca_file))
        with anyio.from_thread.start_blocking_portal() as portal:
            portal.call(_wait_https, port, verify, proc)
        yield port, ca_file, wrong
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        stderr.close()
        clear_client_contexts()


async def _wait_https(port: int, verify: ssl.SSLContext, proc: subprocess.Popen[bytes]) -> None:
    with anyio.fail_after(20):
        async with httpx.AsyncClient(verify=verify) as http:
            while True:
                assert proc.poll() is None, "the server exited during start-up"
                try:
                    if (await http.get(f"https://localhost:{port}/health")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await anyio.sleep(0.05)


async def test_https_calls_with_the_right_ca(served: tuple[int, Path, Path]) -> None:
    port, ca_file, _ = served
    async with Client(f"https://localhost:{port}/mcp", tls=client_context(ca=str(ca_file))) as client:
        result = await client.call_tool("add", {"a": 2, "b": 3})
    assert result.structured_content == {"result": 5}


def test_plain_http_to_a_tls_port_is_refused(served: tuple[int, Path, Path]) -> None:
    port, _, _ = served
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://localhost:{port}/health", timeout=5)


def test_a_client_trusting_another_ca_is_refused(served: tuple[int, Path, Path]) -> None:
    port, _, wrong = served
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"https://localhost:{port}/health", verify=ssl.create_default_context(cafile=str(wrong)), timeout=5)


def test_tls_flags_without_a_certificate_are_a_one_line_error() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mcplane.cli", "run", str(QUICKSTART), "--transport", "http", "--tls-key", "k.pem"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
    )
    assert out.returncode == 1
    assert out.stderr.strip() == "mcplane: error: --tls-key, --tls-client-ca and --tls-crl need --tls-cert"


def test_plain_http_on_a_routable_address_is_a_logged_warning(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "stderr.log"
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [*_RUN, "--host", "0.0.0.0", "--port", str(port)],
            cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            with anyio.from_thread.start_blocking_portal() as portal:
                portal.call(_wait_http, port, proc)
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    assert "serving plain HTTP on 0.0.0.0" in log.read_text()


async def _wait_http(port: int, proc: subprocess.Popen[bytes]) -> None:
    with anyio.fail_after(20):
        async with httpx.AsyncClient() as http:
            while True:
                assert proc.poll() is None, "the server exited during start-up"
                try:
                    if (await http.get(f"http://127.0.0.1:{port}/health")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await anyio.sleep(0.05)
