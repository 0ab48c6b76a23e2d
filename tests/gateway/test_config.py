from __future__ import annotations

from pathlib import Path

import pytest

from mcplane.errors import ConfigError
from mcplane.gateway.config import HTTPEndpoint, StdioEndpoint, load_gateway_config, parse_gateway_config


def test_full_config(tmp_path: Path) -> None:
    file = tmp_path / "gateway.yaml"
    file.write_text(
        """
server: {name: gw, default_timeout: 3s}
rate_limit: {default: 100/minute}
upstreams:
  everything:
    endpoints:
      - command: node
        args: [server.js, "${env:ARG}"]
        env: {API_KEY: "${env:KEY}"}
      - url: http://127.0.0.1:9/mcp
      - url: ws://127.0.0.1:9/mcp
    headers: {Authorization: "Bearer ${env:KEY}"}
    timeout: 2s
    retries: {attempts: 2, backoff: 50ms, attempt_timeout: 500ms}
    breaker: {failures: 2, cool_down: 1s}
    load_balancing: least_in_flight
    health_check: {interval: 5s}
    retryable: ["get-*"]
    depends_on: {"trigger-*": [billing]}
  billing:
    namespace: bill
    endpoints: [{url: "https://billing.internal/mcp"}]
"""
    )
    config = load_gateway_config(file, environ={"KEY": "s3cret", "ARG": "--flag"})
    assert config.plane.server.name == "gw"
    assert config.plane.server.default_timeout == 3
    assert config.plane.rate_limit is not None
    everything = config.upstreams["everything"]
    stdio, http, ws = everything.endpoints
    assert isinstance(stdio, StdioEndpoint)
    assert stdio.args == ["server.js", "--flag"]
    assert stdio.env["API_KEY"].get() == "s3cret"
    assert isinstance(http, HTTPEndpoint)
    assert http.kind == "http"
    assert isinstance(ws, HTTPEndpoint)
    assert ws.kind == "ws"
    assert everything.headers["Authorization"].get() == "Bearer s3cret"
    assert "s3cret" not in repr(everything)
    assert everything.timeout == 2
    assert everything.retries.attempt_timeout == 0.5
    assert everything.load_balancing == "least_in_flight"
    assert config.namespace_of("billing") == "bill"


@pytest.mark.parametrize(
    ("tree", "expected"),
    [
        ({"upstreams": {"a": {"endpoints": []}}}, "upstreams.a.endpoints: List should have at least 1 item"),
        ({"upstreams": {"a": {"endpoints": [{"url": "ftp://x"}]}}}, "upstreams.a.endpoints.0"),
        ({"upstreams": {"a": {"endpoints": [{"command": "x"}], "bogus": 1}}}, "upstreams.a.bogus: Extra inputs"),
        ({"upstreams": {"a": {"endpoints": [{"command": "x"}], "timeout": "soon"}}}, "upstreams.a.timeout"),
        (
            {"upstreams": {"a": {"endpoints": [{"command": "x"}], "load_balancing": "random"}}},
            "upstreams.a.load_balancing",
        ),
        ({"upstreams": {"a": {"endpoints": [{"command": "x"}], "namespace": "x__y"}}}, "upstreams.a.namespace"),
        (
            {"upstreams": {"a": {"endpoints": [{"command": "x"}], "depends_on": {"*": ["nope"]}}}},
            "unknown upstream 'nope'",
        ),
        (
            {"upstreams": {"a": {"endpoints": [{"command": "x"}], "headers": {"X": "y"}}}},
            "headers apply to http(s)://",
        ),
        (
            {
                "upstreams": {
                    "a": {"endpoints": [{"command": "x"}], "namespace": "n"},
                    "b": {"endpoints": [{"command": "x"}], "namespace": "n"},
                }
            },
            "namespace 'n' is also used by 'a'",
        ),
        (
            {
                "upstreams": {
                    "a": {"endpoints": [{"command": "x"}], "namespace": False},
                    "b": {"endpoints": [{"command": "x"}], "namespace": False},
                }
            },
            "upstreams.b: namespace: false is also set on 'a'; at most one upstream may be exposed without a namespace",
        ),
        ({"upstreams": {"a": {"endpoints": [{"command": "x"}], "namespace": True}}}, "upstreams.a.namespace"),
        ({"servr": {}}, "servr: Extra inputs are not permitted"),
    ],
)
def test_precise_errors(tree: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_gateway_config(tree, source="gateway.yaml")
    assert info.value.message.startswith("gateway.yaml: ")
    assert expected in info.value.message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_gateway_config(tmp_path / "nope.yaml")


def test_an_upstream_without_a_namespace() -> None:
    config = parse_gateway_config(
        {
            "upstreams": {
                "root": {"endpoints": [{"command": "x"}], "namespace": False},
                "billing": {"endpoints": [{"command": "x"}], "namespace": "bill"},
                "users": {"endpoints": [{"command": "x"}]},
            },
            "versions": {"fetch": {"versions": {"v1": {"upstream": "root", "tool": "get_user"}}, "default": "v1"}},
        }
    )
    assert config.root == "root"
    assert config.namespace_of("root") is None
    assert (config.prefix_of("root"), config.prefix_of("billing"), config.prefix_of("users")) == (
        "",
        "bill__",
        "users__",
    )
    assert config.target_of("fetch", "v1") == "get_user"
