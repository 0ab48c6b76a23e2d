"""deploy/prometheus/: the alert rules pass ``promtool check rules`` and their unit tests
(``promtool test rules``), and every alert is tested both firing and staying quiet."""

from __future__ import annotations

import subprocess

import pytest

from tests.deploy.deploy_support import (
    ALERTS,
    ALERTS_TEST,
    PROMETHEUS_CONFIG,
    alert_rules,
    load_yaml,
    require_tool,
)

REQUIRED_ALERTS = {
    "McplaneHighErrorRate",  # error rate > 1 %
    "McplaneHighLatencyP99",  # p99 > 5 s
    "McplaneHighCpu",  # CPU > 80 %
    "McplaneToolTimeouts",  # timeouts > 10 % of a tool's calls
    "McplaneCircuitOpen",  # a breaker open for more than a minute
    "McplaneAuditSinkFailing",
    "McplaneToolQuarantined",  # a gateway withholds a changed tool definition
}


def _promtool(*args: str) -> None:
    promtool = require_tool("promtool")
    result = subprocess.run(
        [promtool, *args], cwd=ALERTS.parent, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"promtool {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"


def test_promtool_check_rules() -> None:
    _promtool("check", "rules", ALERTS.name)


def test_promtool_test_rules() -> None:
    _promtool("test", "rules", ALERTS_TEST.name)


def test_promtool_check_config() -> None:
    _promtool("check", "config", PROMETHEUS_CONFIG.name)


def test_the_required_alerts_exist_with_severity_and_summary() -> None:
    rules = alert_rules()
    assert {rule["alert"] for rule in rules} >= REQUIRED_ALERTS
    for rule in rules:
        assert rule["labels"]["severity"] in {"page", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["annotations"]["description"], rule["alert"]
        assert "for" in rule, f"{rule['alert']}: a `for` keeps one bad scrape from alerting"


@pytest.mark.parametrize("alert", sorted(rule["alert"] for rule in alert_rules()))
def test_every_alert_is_tested_firing_and_quiet(alert: str) -> None:
    tests = load_yaml(ALERTS_TEST)
    assert tests["rule_files"] == [ALERTS.name]
    cases = [case for test in tests["tests"] for case in test.get("alert_rule_test", []) if case["alertname"] == alert]
    assert any(case["exp_alerts"] for case in cases), f"{alert}: no case where it fires"
    assert any(not case["exp_alerts"] for case in cases), f"{alert}: no case where it stays quiet"
