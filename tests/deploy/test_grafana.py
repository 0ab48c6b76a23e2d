"""deploy/grafana/: the dashboard has the panels operators need, each query uses the provisioned
data source, and the layout fits the grid."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.deploy.deploy_support import DASHBOARD, DEPLOY, load_yaml

BOARD: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
PANELS = [panel for panel in BOARD["panels"] if panel["type"] != "row"]


def _exprs(title: str) -> list[str]:
    (panel,) = [panel for panel in PANELS if panel["title"] == title]
    return [target["expr"] for target in panel["targets"]]


@pytest.mark.parametrize(
    ("title", "needle"),
    [
        ("Call rate by tool", "rate(mcplane_calls_total"),
        ("Errors by code", 'status="error"'),
        ("Calls in flight", "mcplane_calls_in_flight"),
        ("Cache hit ratio", 'mcplane_cache_requests_total{job=~"$job", result="hit"}'),
        ("Rate-limit rejections", "mcplane_rate_limited_total"),
        ("Circuit breaker states", "mcplane_circuit_state"),
        ("Quarantined tools", "mcplane_gateway_tools_quarantined"),
    ],
)
def test_required_panels(title: str, needle: str) -> None:
    assert any(needle in expr for expr in _exprs(title)), f"{title}: no query with {needle!r}"


def test_latency_panel_shows_p50_p95_p99() -> None:
    exprs = _exprs("Latency p50 / p95 / p99")
    for quantile in ("0.5", "0.95", "0.99"):
        assert any(
            expr.startswith(f"histogram_quantile({quantile},") and "mcplane_call_duration_seconds_bucket" in expr
            for expr in exprs
        ), quantile


def test_breaker_states_are_named() -> None:
    (panel,) = [panel for panel in PANELS if panel["title"] == "Circuit breaker states"]
    (mapping,) = panel["fieldConfig"]["defaults"]["mappings"]
    assert {key: value["text"] for key, value in mapping["options"].items()} == {
        "0": "closed",
        "1": "half-open",
        "2": "open",
    }


def test_every_query_uses_the_datasource_variable_and_the_job_filter() -> None:
    variables = {variable["name"]: variable for variable in BOARD["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in PANELS:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]
            assert 'job=~"$job"' in target["expr"], f"{panel['title']}: {target['expr']}"


def test_panel_ids_are_unique_and_the_layout_fits_without_overlap() -> None:
    ids = [panel["id"] for panel in BOARD["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in BOARD["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        mine = {
            (x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & mine, f"{panel['title']} overlaps another panel"
        cells |= mine


def test_provisioning_files_point_at_the_dashboard_and_prometheus() -> None:
    provisioning = DEPLOY / "grafana" / "provisioning"
    (provider,) = load_yaml(provisioning / "dashboards" / "mcplane.yml")["providers"]
    assert provider["type"] == "file"
    (datasource,) = load_yaml(provisioning / "datasources" / "prometheus.yml")["datasources"]
    assert datasource["type"] == "prometheus"
    assert datasource["isDefault"] is True
    assert BOARD["uid"] == "mcplane"
