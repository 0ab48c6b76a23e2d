"""Shared by the deploy/ tests: paths, the metrics contract, PromQL and exposition parsing,
Dockerfile parsing, and resolving a config file's secret references the way a container would."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from mcplane.config import PlaneConfig
from tests.conftest import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
KUBERNETES = DEPLOY / "kubernetes"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
ALERTS_TEST = DEPLOY / "prometheus" / "alerts_test.yml"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARD = DEPLOY / "grafana" / "mcplane.json"

CONTRACT_METRICS: dict[str, str] = {
    "mcplane_calls_total": "counter",
    "mcplane_call_duration_seconds": "histogram",
    "mcplane_calls_in_flight": "gauge",
    "mcplane_rate_limited_total": "counter",
    "mcplane_cache_requests_total": "counter",
    "mcplane_budget_spent_total": "counter",
    "mcplane_circuit_state": "gauge",
    "mcplane_upstream_healthy": "gauge",
    "mcplane_upstream_calls_total": "counter",
    "mcplane_audit_sink_errors_total": "counter",
    "mcplane_ready": "gauge",
    "mcplane_fast_path_calls_total": "counter",
    "mcplane_canary_rollbacks_total": "counter",
    "mcplane_canary_weight": "gauge",
    "mcplane_gateway_tool_quarantined_total": "counter",
    "mcplane_gateway_tools_quarantined": "gauge",
    "mcplane_gateway_tool_findings_total": "counter",
    "process_cpu_seconds_total": "counter",
    "process_resident_memory_bytes": "gauge",
}
"""The metric names mcplane exports, by contract (the names rules and dashboards may use)."""

DEFAULT_DRAIN_SECONDS = 30.0
"""mcplane's drain of in-flight calls on SIGTERM when ``server.shutdown_grace`` is not set."""


def drain_seconds(config: PlaneConfig) -> float:
    """How long mcplane may spend finishing in-flight calls after SIGTERM, under this config."""
    grace = getattr(config.server, "shutdown_grace", None)
    return float(grace) if isinstance(grace, int | float) else DEFAULT_DRAIN_SECONDS


def series_names(name: str, kind: str) -> set[str]:
    """The sample names a metric family shows in the text format (what PromQL can select)."""
    if kind == "histogram":
        return {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    if kind == "summary":
        return {name, f"{name}_sum", f"{name}_count"}
    if kind == "counter" and not name.endswith("_total"):  # OpenMetrics names the family without _total
        return {name, f"{name}_total"}
    return {name}


CONTRACT_SERIES: set[str] = {s for name, kind in CONTRACT_METRICS.items() for s in series_names(name, kind)}


def require_tool(name: str) -> str:
    """The tool's path; a skip that says how to get it when it is missing (a failure under CI)."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (bash scripts/install-test-deps.sh installs it with apt-get)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must run this test")
        pytest.skip(message)
    return path


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_yaml_docs(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


# --- PromQL ---------------------------------------------------------------------------------

_PROMQL_KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
    "inf", "nan",
}  # fmt: skip
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENT = re.compile(r"(?<![\w:$.])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(?!\s*\()")


def promql_metric_names(expr: str) -> set[str]:
    """The metric (series) names a PromQL expression selects: no functions, labels or keywords."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    return {name for name in _IDENT.findall(text) if name.lower() not in _PROMQL_KEYWORDS}


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(ALERTS)["groups"] for rule in group["rules"]]


def dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    exprs: list[str] = []
    for panel in dashboard["panels"]:
        for sub in [panel, *panel.get("panels", [])]:
            exprs += [target["expr"] for target in sub.get("targets", [])]
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            exprs.append(re.sub(r"^label_values\((.*),\s*\w+\)$", r"\1", text))
    return exprs


# --- The Prometheus text exposition format ------------------------------------------------------


@dataclass
class Exposition:
    types: dict[str, str] = field(default_factory=dict)
    """Family name → type, from ``# TYPE`` lines (families without samples are listed too)."""
    samples: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def series(self) -> set[str]:
        names = {name for name, _ in self.samples}
        for family, kind in self.types.items():
            names |= series_names(family, kind)
        return names


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+\S+")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_exposition(text: str) -> Exposition:
    exposition = Exposition()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            exposition.types[name] = kind.strip()
        elif line and not line.startswith("#"):
            match = _SAMPLE.match(line)
            assert match is not None, f"not a sample line: {line!r}"
            exposition.samples.append((match.group(1), dict(_LABEL.findall(match.group(2) or ""))))
    return exposition


# --- Dockerfile -------------------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str
    args: str
    stage: int
    """Index of the stage it belongs to (-1: before the first FROM)."""

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form ENTRYPOINT/CMD/RUN, or None for the shell form."""
        import json

        text = self.args.strip()
        if not text.startswith("["):
            return None
        value = json.loads(text)
        assert isinstance(value, list), text
        assert all(isinstance(v, str) for v in value), text
        return value


def parse_dockerfile(path: Path) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped (directives included)."""
    instructions: list[Instruction] = []
    stage = -1
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # comment lines inside a continued instruction are dropped by Docker too
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        text = pending + line
        pending = ""
        keyword, _, args = text.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(keyword, args.strip(), stage))
    assert not pending, f"{path}: the last instruction ends with a line continuation"
    return instructions


def flags_and_rest(args: str) -> tuple[dict[str, str], str]:
    """``--name=value`` flags at the start of an instruction's arguments, and the rest."""
    flags: dict[str, str] = {}
    rest = args
    while rest.startswith("--"):
        token, _, rest = rest.partition(" ")
        name, _, value = token[2:].partition("=")
        flags[name] = value
        rest = rest.lstrip()
    return flags, rest


def env_pairs(args: str) -> dict[str, str]:
    """An ENV or ARG instruction's ``KEY=value`` pairs (quotes removed)."""
    pairs: dict[str, str] = {}
    for token in shlex.split(args):
        key, sep, value = token.partition("=")
        pairs[key] = value if sep else ""
    return pairs


def console_scripts() -> dict[str, str]:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return pyproject["project"]["scripts"]


# --- Secret references, resolved as inside a container ------------------------------------------

_FILE_REF = re.compile(r"\$\{file:([^}]*)\}")
_ENV_REF = re.compile(r"(?<!\$)\$\{env:([^}]*)\}")


def env_references(text: str) -> set[str]:
    live = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    return set(_ENV_REF.findall(live))


def file_references(text: str) -> set[str]:
    live = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    return set(_FILE_REF.findall(live))


def localize_file_references(text: str, files: dict[str, Path]) -> str:
    """Point each ``${file:/container/path}`` at the local file that is mounted there."""

    def local(match: re.Match[str]) -> str:
        container_path = match.group(1)
        assert container_path in files, f"${{file:{container_path}}}: nothing is mounted at that path"
        return "${file:" + str(files[container_path]) + "}"

    return _FILE_REF.sub(local, text)
