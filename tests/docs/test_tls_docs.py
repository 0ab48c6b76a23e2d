"""docs/tls.md, run: the serving command, the config snippets, nginx in front of mcplane (when
nginx is installed), the ingress, and the flags table against the real flags."""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
import yaml
from tests.conftest import QUICKSTART, REPO_ROOT, free_port, mcplane_command, start_server
from tests.test_tls import CA, TLSProcess, _wait_https, trusting  # pyright: ignore[reportPrivateUsage]

from mcplane.client import Client
from mcplane.config import PlaneConfig
from mcplane.gateway.config import UpstreamTLS, parse_gateway_config
from mcplane.transports.serve import add_tls_arguments

DOC = (REPO_ROOT / "docs" / "tls.md").read_text(encoding="utf-8")


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC, flags=re.S)


def _command(block: str) -> list[str]:
    return shlex.split(block.replace("\\\n", " "))


def test_the_flags_table_is_the_flags() -> None:
    parser = argparse.ArgumentParser()
    add_tls_arguments(parser)
    flags = {option for action in parser._actions for option in action.option_strings if option.startswith("--tls")}  # pyright: ignore[reportPrivateUsage]
    table = DOC.split("| Flag | Meaning |", 1)[1].split("\n\n", 1)[0]
    assert set(re.findall(r"^\| `(--tls-[a-z-]+)", table, flags=re.M)) == flags


def test_the_serving_command(tmp_path: Path) -> None:
    argv = _command(blocks("bash")[0])
    assert argv[:2] == ["mcplane", "run"]
    assert "--tls-cert" in argv
    ca = CA("docs CA")
    ca.server().write(tmp_path, "server")  # the snippet's server.pem and server.key
    port = free_port()
    argv = [a.replace("app.py", str(QUICKSTART)).replace("8443", str(port)) for a in argv[2:]]
    log = tmp_path / "stderr.log"
    with log.open("wb") as stderr:
        proc = subprocess.Popen(mcplane_command("run", *argv), cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        with anyio.from_thread.start_blocking_portal() as portal:
            portal.call(_wait_https, port, trusting(ca), proc, log)
    finally:
        TLSProcess(proc, port, log).stop()
    assert "plain HTTP" not in log.read_text()


def test_a_bad_certificate_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        mcplane_command("run", str(QUICKSTART), "--transport", "http", "--tls-cert", str(tmp_path / "nope.pem")),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("mcplane: error: cannot load the TLS certificate from")
    assert len(done.stderr.strip().splitlines()) == 1


def test_the_auth_snippet_is_valid_config() -> None:
    tree = yaml.safe_load(next(block for block in blocks("yaml") if "client_certificate" in block))
    config = PlaneConfig.model_validate(tree)
    assert config.auth is not None
    assert config.auth.client_certificate is not None
    assert config.auth.client_certificate.principal_from == "san_uri"
    assert config.auth.client_certificate.roles["*"] == ["agent"]


def test_the_upstream_snippet_is_valid_gateway_config() -> None:
    tree = yaml.safe_load(next(block for block in blocks("yaml") if "upstreams:" in block))
    tls = parse_gateway_config(tree).upstreams["billing"].tls
    assert tls is not None
    assert (tls.verify, tls.server_name) == (True, "billing.internal")
    table = DOC.split("| Key | Default | Meaning |", 1)[1].split("\n\n", 1)[0]
    assert set(re.findall(r"^\| `(\w+)`", table, flags=re.M)) == set(UpstreamTLS.model_fields)


def test_the_ingress_targets_the_kubernetes_service() -> None:
    ingress: dict[str, Any] = yaml.safe_load(next(block for block in blocks("yaml") if "kind: Ingress" in block))
    service: dict[str, Any] = yaml.safe_load((REPO_ROOT / "deploy" / "kubernetes" / "service.yaml").read_text())
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == service["metadata"]["name"]
    assert backend["port"]["name"] in {port["name"] for port in service["spec"]["ports"]}
    assert ingress["spec"]["tls"][0]["hosts"] == [ingress["spec"]["rules"][0]["host"]]


def _start(*argv: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _nginx() -> str:
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)
    if found is None:
        pytest.skip("nginx is not installed")
    return found


async def test_nginx_in_front(tmp_path: Path) -> None:
    nginx = _nginx()
    run = _command(next(block for block in blocks("bash") if "--allow-host" in block))
    assert run[:3] == ["mcplane", "run", "app.py"]
    assert run[run.index("--host") + 1] == "127.0.0.1"
    extra = [arg for arg in run[3:] if arg not in ("--port", "8000")]  # start_server picks a free port
    extra += ["--allow-host", "localhost"]  # this test reaches the proxy as localhost, not mcp.example.com
    served = start_server(QUICKSTART, tmp_path=tmp_path, extra_args=extra)
    ca = CA("proxy CA")
    cert, key = ca.server().write(tmp_path, "proxy")
    proxy_port = free_port()
    snippet = (
        blocks("nginx")[0]
        .replace("listen 443 ssl", f"listen 127.0.0.1:{proxy_port} ssl")
        .replace("/etc/nginx/tls/mcp.example.com.pem", str(cert))
        .replace("/etc/nginx/tls/mcp.example.com.key", str(key))
        .replace("127.0.0.1:8000", f"127.0.0.1:{served.port}")
    )
    temp = "\n".join(
        f"{kind}_temp_path {tmp_path / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"daemon off;\nmaster_process off;\npid {tmp_path / 'nginx.pid'};\nerror_log {tmp_path / 'error.log'};\n"
        f"events {{}}\nhttp {{\naccess_log off;\n{temp}\n{snippet}\n}}\n"
    )
    error_log = tmp_path / "error.log"
    proc = _start(nginx, "-e", str(error_log), "-p", str(tmp_path), "-c", str(conf))
    try:
        with anyio.fail_after(30):
            for scheme in ("https", "wss"):
                while True:
                    try:
                        async with Client(f"{scheme}://localhost:{proxy_port}/mcp", ca=ca.pem) as client:
                            result = await client.call_tool("add", {"a": 1, "b": 2})
                        break
                    except (OSError, httpx2.TransportError):  # nginx not listening yet: polled under the bound
                        if proc.poll() is not None:
                            pytest.fail(await anyio.Path(error_log).read_text())
                        await anyio.sleep(0.05)
                assert result.structured_content == {"result": 3}
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        served.stop()
