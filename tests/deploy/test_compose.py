"""deploy/compose.yaml, checked without a Docker engine: every file it mounts exists, images are
pinned, and the services point at each other consistently (ports, hosts, credentials, paths).
mcplane's config is loaded the way the container loads it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from mcplane.cli import _parser
from mcplane.config import PlaneConfig, load_config
from tests.conftest import REPO_ROOT
from tests.deploy.deploy_support import (
    COMPOSE,
    DASHBOARD,
    DEPLOY,
    DOCKERFILE,
    PROMETHEUS_CONFIG,
    drain_seconds,
    load_yaml,
    localize_file_references,
)

COMPOSE_DATA: dict[str, Any] = load_yaml(COMPOSE)
SERVICES: dict[str, dict[str, Any]] = COMPOSE_DATA["services"]
PINNED = re.compile(r"^[\w./-]+(:[\w.-]*\d+\.\d+[\w.-]*)?(@sha256:[0-9a-f]{64})?$")


def _environment(service: str) -> dict[str, str]:
    env = SERVICES[service].get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def _mounts(service: str) -> dict[str, Path]:
    """Container path → local path of every bind mount and secret of a service."""
    mounts: dict[str, Path] = {}
    for volume in SERVICES[service].get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            mounts[target] = (DEPLOY / source).resolve()
    for secret in SERVICES[service].get("secrets", []):
        name = secret if isinstance(secret, str) else secret["source"]
        target = f"/run/secrets/{name}" if isinstance(secret, str) else secret.get("target", f"/run/secrets/{name}")
        mounts[target] = (DEPLOY / COMPOSE_DATA["secrets"][name]["file"]).resolve()
    return mounts


def _published_ports(service: str) -> dict[int, int]:
    """Container port → host port."""
    ports: dict[int, int] = {}
    for spec in SERVICES[service].get("ports", []):
        parts = str(spec).split(":")
        ports[int(parts[-1].split("/")[0])] = int(parts[-2])
    return ports


def _mcplane_args() -> Any:
    return _parser().parse_args(SERVICES["mcplane"]["command"])


def _otel_service() -> str:
    found = [name for name in SERVICES if "jaeger" in name or "otel" in name]
    assert found, "a tracing backend (Jaeger or an OpenTelemetry collector)"
    return found[0]


def test_the_stack_has_every_service() -> None:
    assert {"mcplane", "redis", "postgres", "prometheus", "grafana"} <= set(SERVICES)
    _otel_service()
    for name, service in SERVICES.items():
        for dependency in service.get("depends_on", []):
            assert dependency in SERVICES, f"{name} depends on unknown service {dependency}"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_images_are_pinned(name: str) -> None:
    service = SERVICES[name]
    if "build" in service:
        build = service["build"]
        context = (DEPLOY / build["context"]).resolve()
        assert context == REPO_ROOT
        assert (context / build["dockerfile"]).resolve() == DOCKERFILE
        return
    image = service["image"]
    assert ":" in image or "@" in image, f"{name}: {image} has no tag"
    assert not image.endswith(":latest")
    assert PINNED.match(image), f"{name}: {image} is not pinned to an exact version or digest"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_mounted_files_exist(name: str) -> None:
    for target, local in _mounts(name).items():
        assert local.exists(), f"{name}: {local} (mounted at {target}) does not exist"
        assert REPO_ROOT in local.parents, f"{name}: mounts {local} from outside the repository"


def test_mcplane_serves_the_port_that_is_published_and_scraped() -> None:
    args = _mcplane_args()
    assert (args.command, args.transport, args.host) == ("run", "http", "0.0.0.0")
    assert args.target in _mounts("mcplane"), f"{args.target} is not mounted into the container"
    assert args.port in _published_ports("mcplane")
    assert _environment("mcplane")["MCPLANE_HEALTH_URL"] == f"http://127.0.0.1:{args.port}/health"

    prometheus = load_yaml(PROMETHEUS_CONFIG)
    (job,) = [job for job in prometheus["scrape_configs"] if job["job_name"] == "mcplane"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = [target for group in job["static_configs"] for target in group["targets"]]
    assert targets == [f"mcplane:{args.port}"]


def test_prometheus_loads_its_config_and_the_alert_rules() -> None:
    mounts = _mounts("prometheus")
    command = SERVICES["prometheus"]["command"]
    (config_flag,) = [arg for arg in command if arg.startswith("--config.file=")]
    config_path = config_flag.split("=", 1)[1]
    assert mounts[config_path] == PROMETHEUS_CONFIG
    for rule_file in load_yaml(PROMETHEUS_CONFIG)["rule_files"]:
        in_container = str(Path(config_path).parent / rule_file)
        assert in_container in mounts, f"rule file {rule_file} is not mounted at {in_container}"
        assert mounts[in_container] == DEPLOY / "prometheus" / "alerts.yml"


def test_grafana_provisions_the_datasource_and_the_dashboard() -> None:
    mounts = _mounts("grafana")
    provisioning = {target: local for target, local in mounts.items() if target.startswith("/etc/grafana/provisioning")}
    datasources = load_yaml(provisioning["/etc/grafana/provisioning/datasources"] / "prometheus.yml")["datasources"]
    (prometheus,) = [ds for ds in datasources if ds["type"] == "prometheus"]
    url = urlsplit(prometheus["url"])
    assert url.hostname == "prometheus"
    assert url.port == 9090
    assert 9090 in _published_ports("prometheus")

    providers = load_yaml(provisioning["/etc/grafana/provisioning/dashboards"] / "mcplane.yml")["providers"]
    dashboard_dirs = {provider["options"]["path"] for provider in providers}
    dashboards = {target: local for target, local in mounts.items() if target.endswith(".json")}
    assert dashboards, "the dashboard JSON is mounted"
    for target, local in dashboards.items():
        assert str(Path(target).parent) in dashboard_dirs, f"{target} is outside every provider's path"
        assert local == DASHBOARD


def test_mcplane_reaches_redis_and_postgres_once_they_are_healthy() -> None:
    env = _environment("mcplane")
    redis = urlsplit(env["REDIS_URL"])
    assert (redis.hostname, redis.port or 6379) == ("redis", 6379)
    depends = SERVICES["mcplane"]["depends_on"]
    assert depends["redis"]["condition"] == depends["postgres"]["condition"] == "service_healthy"
    assert "healthcheck" in SERVICES["redis"]
    assert "healthcheck" in SERVICES["postgres"]


def test_mcplane_exports_traces_to_the_collector(tmp_path: Path) -> None:
    env = _environment("mcplane")
    tracing = _mcplane_config(tmp_path).observability.tracing
    assert tracing.enabled
    endpoint = urlsplit(tracing.otlp_endpoint or env["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert endpoint.hostname == _otel_service()
    assert endpoint.port == 4318, "mcplane exports OTLP over HTTP"
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    assert (tracing.service_name or env["OTEL_SERVICE_NAME"]) == "mcplane"


def _mcplane_config(tmp_path: Path) -> PlaneConfig:
    """mcplane's config as the container loads it: $MCPLANE_CONFIG, its environment, its mounts."""
    env = _environment("mcplane")
    mounts = _mounts("mcplane")
    config_file = mounts[env["MCPLANE_CONFIG"]]
    local = tmp_path / "mcplane.yaml"
    local.write_text(localize_file_references(config_file.read_text(), mounts))
    return load_config(local, environ=env)


def test_mcplane_config_loads_with_the_containers_environment_and_secrets(tmp_path: Path) -> None:
    env = _environment("mcplane")
    config = _mcplane_config(tmp_path)

    assert config.redis_url is not None
    assert config.redis_url.get() == env["REDIS_URL"]
    assert config.rate_limit is not None
    assert config.rate_limit.backend == "redis"
    assert config.audit is not None
    assert config.audit.sink == "postgres"
    assert config.audit.dsn is not None
    dsn = urlsplit(config.audit.dsn.get())
    postgres = _environment("postgres")
    assert (dsn.hostname, dsn.port or 5432) == ("postgres", 5432)
    assert dsn.username == postgres["POSTGRES_USER"]
    assert dsn.path.lstrip("/") == postgres["POSTGRES_DB"]
    password_file = _mounts("postgres")[postgres["POSTGRES_PASSWORD_FILE"]]
    assert dsn.password == password_file.read_text().rstrip("\n")

    hosts = config.http.allowed_hosts or []
    assert "mcplane:*" in hosts, "Prometheus scrapes mcplane:8000 over the compose network"
    assert any(host.startswith(("localhost", "127.0.0.1")) for host in hosts), "the published port"


def test_stop_grace_period_covers_the_drain(tmp_path: Path) -> None:
    period = SERVICES["mcplane"]["stop_grace_period"]
    match = re.fullmatch(r"(\d+)s", period)
    assert match is not None
    assert int(match.group(1)) > drain_seconds(_mcplane_config(tmp_path))
