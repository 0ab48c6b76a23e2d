"""deploy/kubernetes/: every manifest validated against the Kubernetes OpenAPI schemas
(kubernetes-validate, strict), the ServiceMonitor structurally (its CRD is not in those schemas),
and the pieces checked against each other and against the code they run."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import pytest

from mcplane.cli import _parser
from mcplane.config import PlaneConfig, load_config
from tests.conftest import REPO_ROOT
from tests.deploy.deploy_support import (
    DOCKERFILE,
    KUBERNETES,
    drain_seconds,
    env_references,
    file_references,
    load_yaml,
    load_yaml_docs,
    localize_file_references,
    parse_dockerfile,
)

SCHEMA_VERSIONS = ("1.29", "latest")
"""The oldest Kubernetes the manifests support, and the newest kubernetes-validate knows."""

KUSTOMIZATION = load_yaml(KUBERNETES / "kustomization.yaml")
MANIFEST_FILES = sorted(p for p in KUBERNETES.glob("*.yaml") if p.name != "kustomization.yaml")
RESOURCES: list[tuple[str, dict[str, Any]]] = [(p.name, doc) for p in MANIFEST_FILES for doc in load_yaml_docs(p)]
CUSTOM_RESOURCES = {"ServiceMonitor"}
"""Kinds from CRDs kubernetes-validate has no schema for: each is checked structurally below."""
BUILTIN = [(file, doc) for file, doc in RESOURCES if doc["kind"] not in CUSTOM_RESOURCES]


def _one(kind: str) -> dict[str, Any]:
    found = [doc for _, doc in RESOURCES if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


DEPLOYMENT = _one("Deployment")
POD = DEPLOYMENT["spec"]["template"]["spec"]
(CONTAINER,) = POD["containers"]
SERVICE = _one("Service")
SECRET = _one("Secret")
CONFIGMAP = _one("ConfigMap")


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def _duration(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text)
    assert "".join(n + u for n, u in parts) == text, f"not a duration: {text!r}"
    return sum(float(n) * units[u] for n, u in parts)


def _container_args() -> argparse.Namespace:
    assert "command" not in CONTAINER, "the image's ENTRYPOINT (mcplane) runs; args are its arguments"
    try:
        return _parser().parse_args(CONTAINER["args"])
    except SystemExit:
        pytest.fail(f"`mcplane {' '.join(CONTAINER['args'])}` is not a valid mcplane command line")


def _port_names() -> dict[str, int]:
    return {port["name"]: port["containerPort"] for port in CONTAINER["ports"]}


def _mounted_files(secret_dir: Path) -> dict[str, Path]:
    """Container path → a local file holding what the pod would see there (Secret volumes)."""
    volumes = {volume["name"]: volume for volume in POD["volumes"]}
    files: dict[str, Path] = {}
    secret_data = SECRET.get("stringData", {})
    for mount in CONTAINER["volumeMounts"]:
        volume = volumes[mount["name"]]
        if "secret" not in volume:
            continue
        assert volume["secret"]["secretName"] == SECRET["metadata"]["name"]
        items = volume["secret"].get("items") or [{"key": key, "path": key} for key in secret_data]
        for item in items:
            assert item["key"] in secret_data, f"volume {mount['name']}: no key {item['key']} in the Secret"
            local = secret_dir / item["path"]
            local.write_text(secret_data[item["key"]])
            files[f"{mount['mountPath'].rstrip('/')}/{item['path']}"] = local
    return files


def _container_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for var in CONTAINER.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
            continue
        ref = var["valueFrom"]["secretKeyRef"]
        assert ref["name"] == SECRET["metadata"]["name"], f"{var['name']}: unknown Secret {ref['name']}"
        assert ref["key"] in SECRET["stringData"], f"{var['name']}: no key {ref['key']} in the Secret"
        env[var["name"]] = SECRET["stringData"][ref["key"]]
    return env


def _config_text() -> str:
    args = _container_args()
    for mount in CONTAINER["volumeMounts"]:
        volume = next(v for v in POD["volumes"] if v["name"] == mount["name"])
        if "configMap" in volume and args.config.startswith(mount["mountPath"].rstrip("/") + "/"):
            assert volume["configMap"]["name"] == CONFIGMAP["metadata"]["name"]
            key = args.config[len(mount["mountPath"].rstrip("/")) + 1 :]
            assert key in CONFIGMAP["data"], f"--config {args.config}: no key {key} in the ConfigMap"
            return CONFIGMAP["data"][key]
    pytest.fail(f"--config {args.config} is not in a mounted ConfigMap")


def _config(tmp_path: Path) -> PlaneConfig:
    """The ConfigMap's mcplane.yaml, loaded as the pod loads it: its env, its mounted Secret files."""
    local = tmp_path / "mcplane.yaml"
    local.write_text(localize_file_references(_config_text(), _mounted_files(tmp_path)))
    return load_config(local, environ=_container_env())


@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
@pytest.mark.parametrize(("file", "resource"), BUILTIN, ids=[f"{f}:{r['kind']}" for f, r in BUILTIN])
def test_manifest_is_valid_kubernetes(file: str, resource: dict[str, Any], version: str) -> None:
    try:
        import kubernetes_validate
    except ImportError:
        pytest.fail('kubernetes-validate is missing: pip install -e ".[test]"')
    if version == "latest":
        version = kubernetes_validate.latest_version()
    try:
        kubernetes_validate.validate(resource, version, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        pytest.fail(f"{file}: no schema for {resource['kind']}: a CRD? add it to CUSTOM_RESOURCES and check it")
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(part) for part in exc.path)
        pytest.fail(f"{file}: {resource['kind']} at {where}: {exc.message} (Kubernetes {version})")


def test_kustomization_lists_every_manifest_and_sets_the_image() -> None:
    assert KUSTOMIZATION["kind"] == "Kustomization"
    assert sorted(KUSTOMIZATION["resources"]) == [p.name for p in MANIFEST_FILES]
    images = {image["name"] for image in KUSTOMIZATION.get("images", [])}
    assert CONTAINER["image"].split(":")[0] in images
    namespace = _one("Namespace")["metadata"]["name"]
    assert KUSTOMIZATION["namespace"] == namespace
    assert all("namespace" not in doc["metadata"] for _, doc in RESOURCES), "kustomize sets the namespace"


def test_three_replicas_autoscaled_three_to_ten_at_70_percent_cpu() -> None:
    assert DEPLOYMENT["spec"]["replicas"] == 3
    hpa = _one("HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", DEPLOYMENT["metadata"]["name"])
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 10)
    assert hpa["spec"]["minReplicas"] == DEPLOYMENT["spec"]["replicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}
    assert "cpu" in CONTAINER["resources"]["requests"], "utilization is a share of the CPU request"


def test_selectors_match_the_pods() -> None:
    labels = DEPLOYMENT["spec"]["template"]["metadata"]["labels"]
    assert _matches(DEPLOYMENT["spec"]["selector"]["matchLabels"], labels)
    assert _matches(SERVICE["spec"]["selector"], labels)
    pdb = _one("PodDisruptionBudget")
    assert _matches(pdb["spec"]["selector"]["matchLabels"], labels)
    if "maxUnavailable" in pdb["spec"]:
        assert 1 <= pdb["spec"]["maxUnavailable"] < DEPLOYMENT["spec"]["replicas"]
    else:
        assert 1 <= pdb["spec"]["minAvailable"] < DEPLOYMENT["spec"]["replicas"], "drains must be able to proceed"
    for port in SERVICE["spec"]["ports"]:
        assert port["targetPort"] in _port_names(), f"Service port {port['name']} targets no container port"
    assert POD["serviceAccountName"] == _one("ServiceAccount")["metadata"]["name"]


def test_the_container_runs_mcplane_with_flags_the_cli_accepts() -> None:
    args = _container_args()
    assert (args.command, args.transport, args.host) == ("run", "http", "0.0.0.0")
    assert args.port == _port_names()["http"]


def test_probes_hit_the_health_and_readiness_endpoints() -> None:
    liveness = CONTAINER["livenessProbe"]["httpGet"]
    readiness = CONTAINER["readinessProbe"]["httpGet"]
    assert liveness["path"] == "/health"
    assert readiness["path"] == "/ready"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        if probe in CONTAINER:
            port = CONTAINER[probe]["httpGet"]["port"]
            assert port in _port_names() or port in _port_names().values(), f"{probe} port {port}"
    served = (REPO_ROOT / "src" / "mcplane" / "transports" / "tier" / "probes.py").read_text()
    for path in (liveness["path"], readiness["path"]):
        assert f'path == "{path}"' in served, f"the HTTP tier no longer serves {path}"


def test_termination_grace_covers_prestop_and_the_drain(tmp_path: Path) -> None:
    command = CONTAINER["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep", "preStop: sleep while endpoints stop routing calls here"
    (pre_stop,) = (float(seconds) for seconds in command[1:])
    assert pre_stop >= 5, "long enough for endpoints and load balancers to stop sending calls"
    drain = drain_seconds(_config(tmp_path))
    grace = POD["terminationGracePeriodSeconds"]
    assert grace > pre_stop + drain, f"{grace} s must exceed preStop {pre_stop:g} s + drain {drain:g} s"


def test_resources_have_requests_and_limits() -> None:
    resources = CONTAINER["resources"]
    quantity = {"m": 0.001, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "": 1}

    def amount(value: str | int) -> float:
        match = re.fullmatch(r"(\d+(?:\.\d+)?)(m|Ki|Mi|Gi|)", str(value))
        assert match is not None, f"not a quantity: {value!r}"
        return float(match.group(1)) * quantity[match.group(2)]

    for name in ("cpu", "memory"):
        assert amount(resources["requests"][name]) <= amount(resources["limits"][name]), name


def test_security_context_meets_the_restricted_pod_security_standard() -> None:
    pod = POD["securityContext"]
    container = CONTAINER["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] != 0
    assert pod["seccompProfile"]["type"] == "RuntimeDefault"
    assert container["readOnlyRootFilesystem"] is True
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"]["drop"] == ["ALL"]
    assert POD["automountServiceAccountToken"] is False
    namespace = _one("Namespace")["metadata"]["labels"]
    assert namespace["pod-security.kubernetes.io/enforce"] == "restricted"

    (user,) = [i for i in parse_dockerfile(DOCKERFILE) if i.keyword == "USER"]
    assert pod["runAsUser"] == int(user.args.split(":")[0]), "the image's user"
    writable = {mount["mountPath"] for mount in CONTAINER["volumeMounts"] if not mount.get("readOnly")}
    assert "/tmp" in writable, "a writable /tmp on a read-only root filesystem"


def test_config_comes_from_the_configmap_and_secrets_from_the_secret(tmp_path: Path) -> None:
    text = _config_text()
    assert env_references(text), "some secrets come through the environment (${env:...})"
    assert file_references(text), "some secrets come from mounted files (${file:...})"
    env = _container_env()
    assert env_references(text) <= set(env), "every ${env:...} is set in the container"
    for name in env_references(text):
        var = next(v for v in CONTAINER["env"] if v["name"] == name)
        assert "secretKeyRef" in var.get("valueFrom", {}), f"{name} comes from the Secret"

    config = _config(tmp_path)
    assert config.redis_url is not None
    assert config.redis_url.get() == SECRET["stringData"]["redis-url"]
    assert config.audit is not None
    assert config.audit.dsn is not None
    assert config.audit.dsn.get() == SECRET["stringData"]["audit-dsn"]
    keys = [key.get() for key in config.sessions.keys]
    assert keys == [SECRET["stringData"]["session-key"]], "every replica seals sessions with the Secret's key"
    hosts = config.http.allowed_hosts or []
    service_host = f"{SERVICE['metadata']['name']}.{KUSTOMIZATION['namespace']}.svc.cluster.local"
    assert {service_host, f"{service_host}:*"} <= set(hosts), "in-cluster clients use the Service's name"


def test_service_monitor_scrapes_the_service() -> None:
    monitor = _one("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["name"]
    assert set(monitor["spec"]) <= {"selector", "endpoints", "namespaceSelector", "jobLabel", "targetLabels"}
    assert _matches(monitor["spec"]["selector"]["matchLabels"], SERVICE["metadata"]["labels"])
    service_ports = {port["name"] for port in SERVICE["spec"]["ports"]}
    assert monitor["spec"]["endpoints"]
    for endpoint in monitor["spec"]["endpoints"]:
        assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "scheme", "honorLabels"}
        assert endpoint["port"] in service_ports
        assert endpoint["path"] == "/metrics"
        assert endpoint.get("scheme", "http") == "http"
        assert _duration(endpoint["scrapeTimeout"]) <= _duration(endpoint["interval"])
