"""docs/operations.md says what the code does: its config loads, its metric table is the metrics contract."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from mcplane.config import load_config
from mcplane.observability.lifecycle import LINGER_SECONDS
from mcplane.observability.metrics import BUCKETS, Metrics
from tests.conftest import REPO_ROOT

GUIDE = (REPO_ROOT / "docs" / "operations.md").read_text(encoding="utf-8")


def test_the_config_snippet_loads(tmp_path: Path) -> None:
    (snippet,) = re.findall(r"```yaml\n(.*?)```", GUIDE, flags=re.S)
    path = tmp_path / "mcplane.yaml"
    path.write_text(snippet, encoding="utf-8")
    config = load_config(path, environ={})
    assert config.server.shutdown_grace == 30.0
    assert config.observability.tracing.otlp_endpoint == "http://otel-collector:4318"


def test_the_metric_table_is_the_contract() -> None:
    table = GUIDE.split("## Metrics", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `(mcplane_\w+)` \|", table, flags=re.M))
    registry = CollectorRegistry()
    Metrics(registry)
    exported = {
        metric.name + ("_total" if metric.type == "counter" else "")
        for metric in registry.collect()
        if metric.name.startswith("mcplane_")
    }
    assert documented == exported
    assert "buckets 0.5 ms, 1, 2.5, 5, 10, 25, 50, 100, 250, 500 ms, 1, 2.5, 5, 10, 30 s" in table
    assert BUCKETS == (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def test_the_linger_is_as_documented() -> None:
    assert f"For {LINGER_SECONDS:g} s more" in GUIDE
