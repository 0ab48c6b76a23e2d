"""Every metric the alert rules and the dashboard use is one mcplane exports: by the metrics
contract (always checked), and on a real server's ``/metrics`` after a call."""

from __future__ import annotations

import json

import httpx
import pytest
from mcp import Client

from tests.conftest import ServerProcess
from tests.deploy.deploy_support import (
    CONTRACT_SERIES,
    DASHBOARD,
    alert_rules,
    dashboard_exprs,
    parse_exposition,
    promql_metric_names,
)


def _used() -> dict[str, set[str]]:
    """Series name → where it is used."""
    used: dict[str, set[str]] = {}
    for rule in alert_rules():
        for name in promql_metric_names(rule["expr"]):
            used.setdefault(name, set()).add(f"alert {rule['alert']}")
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    for expr in dashboard_exprs(board):
        for name in promql_metric_names(expr):
            used.setdefault(name, set()).add("dashboard")
    return used


def test_promql_names_are_extracted() -> None:
    expr = 'histogram_quantile(0.99, sum by (le) (rate(a_bucket{job=~"$job", x="y z"}[5m]))) > 5 and on (job) up'
    assert promql_metric_names(expr) == {"a_bucket", "up"}


def test_rules_and_dashboard_use_only_contract_metrics() -> None:
    used = _used()
    assert {"mcplane_calls_total", "mcplane_call_duration_seconds_bucket"} <= set(used)
    unknown = {name: sorted(where) for name, where in used.items() if name not in CONTRACT_SERIES}
    assert not unknown, f"not in the metrics contract: {unknown}"


async def test_rules_and_dashboard_use_only_metrics_a_server_exports(deploy_server: ServerProcess) -> None:
    async with Client(deploy_server.url) as client:
        assert (await client.call_tool("add", {"a": 2, "b": 3})).structured_content == {"result": 5}
        for _ in range(2):  # a cache miss, then a hit
            assert not (await client.call_tool("fetch_user", {"user_id": "u1"})).is_error
    async with httpx.AsyncClient(base_url=deploy_server.base, timeout=5.0) as http:
        response = await http.get("/metrics")
    if response.status_code == 404:
        pytest.skip("/metrics answers 404: the metrics endpoint is not served yet")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(("text/plain", "application/openmetrics-text"))
    exposition = parse_exposition(response.text)

    exported = exposition.series()
    missing = {name: sorted(where) for name, where in _used().items() if name not in exported}
    assert not missing, f"used by rules or the dashboard but not exported: {missing}"

    # The label values the rules and the dashboard select on.
    calls = [labels for name, labels in exposition.samples if name == "mcplane_calls_total"]
    assert {"kind": "tool", "name": "add", "status": "ok", "code": ""} in [
        {key: labels.get(key) for key in ("kind", "name", "status", "code")} for labels in calls
    ], f"no mcplane_calls_total sample for the call to add: {calls}"
    results = {labels.get("result") for name, labels in exposition.samples if name == "mcplane_cache_requests_total"}
    assert {"hit", "miss"} <= results, f"cache results seen: {results}"
