from __future__ import annotations

from mcplane.gateway import load_gateway_config
from tests.conftest import REPO_ROOT


def test_example_config_is_valid() -> None:
    config = load_gateway_config(REPO_ROOT / "examples" / "gateway" / "gateway.yaml", environ={})
    assert config.namespace_of("everything") == "everything"
    assert config.plane.policy_for("everything__echo")["timeout"] == 15


def test_the_conformance_gateway_exposes_the_server_under_its_own_names() -> None:
    environ = {"CONFORMANCE_UPSTREAM_URL": "http://127.0.0.1:9001/mcp"}
    config = load_gateway_config(REPO_ROOT / "examples" / "conformance" / "gateway.yaml", environ=environ)
    assert config.root == "conformance"
    assert config.prefix_of("conformance") == ""
