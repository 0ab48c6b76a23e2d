from __future__ import annotations

from mcplane.gateway import load_gateway_config
from tests.conftest import REPO_ROOT


def test_example_config_is_valid() -> None:
    config = load_gateway_config(REPO_ROOT / "examples" / "gateway" / "gateway.yaml", environ={})
    assert config.namespace_of("everything") == "everything"
    assert config.plane.policy_for("everything__echo")["timeout"] == 15
