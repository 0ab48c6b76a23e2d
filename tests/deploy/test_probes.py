"""The health checks the deployments declare, run against a real server: Docker's HEALTHCHECK
command, and Kubernetes' probes (and Prometheus' scrape) arriving with a pod-IP Host header that
no allow-list names."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from tests.conftest import ServerProcess, free_port
from tests.deploy.conftest import POD_IP_HOST
from tests.deploy.deploy_support import DOCKERFILE, KUBERNETES, Instruction, flags_and_rest, load_yaml, parse_dockerfile


def _healthcheck_argv() -> list[str]:
    (healthcheck,) = [i for i in parse_dockerfile(DOCKERFILE) if i.keyword == "HEALTHCHECK"]
    _, command = flags_and_rest(healthcheck.args)
    argv = Instruction("CMD", command.removeprefix("CMD "), healthcheck.stage).exec_form()
    assert argv is not None
    assert argv[0] == "python"
    return [sys.executable, *argv[1:]]


def _run_healthcheck(url: str) -> int:
    return subprocess.run(
        _healthcheck_argv(), env={"MCPLANE_HEALTH_URL": url}, capture_output=True, timeout=30, check=False
    ).returncode


def test_docker_healthcheck_passes_on_a_live_server_and_fails_on_a_dead_one(deploy_server: ServerProcess) -> None:
    assert _run_healthcheck(f"{deploy_server.base}/health") == 0
    assert _run_healthcheck(f"http://127.0.0.1:{free_port()}/health") != 0


@pytest.mark.parametrize("probe", ["startupProbe", "livenessProbe", "readinessProbe"])
def test_kubernetes_probes_answer_200_by_pod_ip(deploy_server: ServerProcess, probe: str) -> None:
    deployment = load_yaml(KUBERNETES / "deployment.yaml")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    path = container[probe]["httpGet"]["path"]
    response = httpx.get(f"{deploy_server.base}{path}", headers={"host": POD_IP_HOST}, timeout=5.0)
    assert response.status_code == 200, f"{probe} GET {path}: {response.status_code} {response.text}"


def test_the_host_guard_is_on_for_the_endpoint(deploy_server: ServerProcess) -> None:
    """So the probe test above shows the probes are exempt, not that nothing is checked."""
    response = httpx.post(deploy_server.url, headers={"host": POD_IP_HOST}, json={}, timeout=5.0)
    assert response.status_code == 421


def test_prometheus_scrapes_metrics_by_pod_ip(deploy_server: ServerProcess) -> None:
    if httpx.get(f"{deploy_server.base}/metrics", timeout=5.0).status_code == 404:
        pytest.skip("/metrics answers 404: the metrics endpoint is not served yet")
    response = httpx.get(f"{deploy_server.base}/metrics", headers={"host": POD_IP_HOST}, timeout=5.0)
    assert response.status_code == 200, (
        f"/metrics with Host {POD_IP_HOST} answered {response.status_code}: the ServiceMonitor scrapes each pod by "
        "its IP, so /metrics must be served before the Host check, like /health and /ready"
    )
