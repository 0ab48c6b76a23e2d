"""Tool versions behind an in-process gateway with two real upstream processes (v1 and v2 of
``fetch_user``): default, weighted canary, pins, automatic rollback, metrics and the log event."""

from __future__ import annotations

import logging
from typing import Any, cast

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, TextContent
from prometheus_client import CollectorRegistry

from mcplane import Plane
from mcplane.errors import ConfigError, DependencyUnavailable, InvalidArguments, NotFound
from mcplane.gateway import Gateway
from mcplane.gateway.config import GatewayConfig, parse_gateway_config
from mcplane.gateway.versions import CanaryWindow, Route, VersionRouter, exception_failed, result_failed
from mcplane.observability import metrics as metrics_module
from mcplane.observability.logs import EVENT_KEY
from mcplane.observability.metrics import Metrics
from tests.conftest import error_of
from tests.gateway.conftest import error_code
from tests.gateway.versions_support import FakeClock, sequence, served_by, text, users_upstream, versioned

TOOL = "users__fetch_user"


@pytest.fixture
def metrics(monkeypatch: pytest.MonkeyPatch) -> Metrics:
    fresh = Metrics(CollectorRegistry())
    monkeypatch.setattr(metrics_module, "_default", fresh)
    return fresh


def _gateway(entry: dict[str, Any], *, v2_env: dict[str, str] | None = None, **options: Any) -> Plane:
    tree = {
        "server": {"default_timeout": "20s"},
        "upstreams": {"users_v1": users_upstream("v1"), "users_v2": users_upstream("v2", **(v2_env or {}))},
        "versions": {TOOL: entry},
    }
    return Gateway.from_config(tree, **options)


async def _fetch(client: Client, user: str = "u1", pin: Any = None) -> Any:
    meta: Any = None if pin is None else {"mcplane/version": pin}
    return await client.call_tool(TOOL, {"user_id": user}, meta=meta)


async def test_default_serves_the_canary_takes_its_weight_and_pins_win() -> None:
    canary: dict[str, Any] = {"canary": {"version": "v2", "weight": 0.25}}
    plane = _gateway(versioned(**canary), version_rand=sequence([0.1, 0.3, 0.9, 0.2499, 0.25]))
    async with Client(plane.sdk, mode="legacy") as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert [name for name in tools if name.endswith("__fetch_user")] == [
            TOOL,  # listed once, with the default version's schema ...
            "users_v1__fetch_user",  # ... and each version stays reachable under its own name
            "users_v2__fetch_user",
        ]
        assert tools[TOOL].input_schema == tools["users_v1__fetch_user"].input_schema

        answers = [text(await _fetch(client)) for _ in range(5)]  # draws below 0.25 go to the canary
        assert answers == ["v2:u1", "v1:u1", "v1:u1", "v2:u1", "v1:u1"]

        pinned = await _fetch(client, pin="v2")  # a pin draws nothing
        assert (text(pinned), served_by(pinned)) == ("v2:u1", "v2")
        pinned = await _fetch(client, pin="v1")
        assert (text(pinned), served_by(pinned)) == ("v1:u1", "v1")
        assert text(await client.call_tool("users_v2__fetch_user", {"user_id": "u2"})) == "v2:u2"

        unknown = await _fetch(client, pin="v9")
        assert error_code(unknown) == "not_found"
        body: Any = {"error": error_of(unknown)}
        assert body["error"]["details"] == {"tool": TOOL, "version": "v9", "versions": ["v1", "v2"]}
        assert error_code(await _fetch(client, pin=2)) == "invalid_arguments"


async def test_without_a_canary_the_default_serves_and_hidden_versions_are_unreachable() -> None:
    plane = _gateway(versioned(default="v2", expose_versions=False), version_rand=sequence([]))
    async with Client(plane.sdk, mode="legacy") as client:
        names = [tool.name for tool in (await client.list_tools()).tools]
        assert [name for name in names if name.endswith("__fetch_user")] == [TOOL]
        for _ in range(3):
            result = await _fetch(client)
            assert (text(result), served_by(result)) == ("v2:u1", "v2")
        assert text(await _fetch(client, pin="v1")) == "v1:u1"  # pins still reach it
        with pytest.raises(MCPError, match="Unknown tool"):
            await client.call_tool("users_v1__fetch_user", {"user_id": "u1"})


async def test_a_failing_canary_rolls_back_to_stable(metrics: Metrics, caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    entry = versioned(
        canary={"version": "v2", "weight": 1.0},
        rollback={"error_rate": 0.5, "window": "60s", "min_calls": 4},
    )
    plane = _gateway(entry, v2_env={"USERS_BUG": "boom"}, clock=clock, version_rand=lambda: 0.5)

    def rollbacks() -> float:
        return metrics.registry.get_sample_value("mcplane_canary_rollbacks_total", {"tool": TOOL}) or 0.0

    def weight() -> float | None:
        return metrics.registry.get_sample_value("mcplane_canary_weight", {"tool": TOOL})

    caplog.set_level(logging.WARNING, logger="mcplane.gateway")
    async with Client(plane.sdk, mode="legacy") as client:
        assert weight() == 1.0
        for _ in range(3):  # the caller's mistakes are not the canary's: they count for nothing
            assert error_code(await _fetch(client, "nobody")) == "not_found"
        for _ in range(3):  # failures, but they leave the window before it holds min_calls calls
            assert error_code(await _fetch(client, "boom")) == "internal_error"
        clock.now += 61
        assert text(await _fetch(client)) == "v2:u1"
        assert error_code(await _fetch(client, "boom")) == "internal_error"
        assert error_code(await _fetch(client, "boom")) == "internal_error"  # 2 of 3: below min_calls
        assert rollbacks() == 0
        assert text(await _fetch(client)) == "v2:u1"  # 2 of 4: at the threshold -> rolled back
        assert rollbacks() == 1
        assert weight() == 0.0
        for _ in range(3):  # unpinned traffic is back on stable, even what v2 crashed on
            result = await _fetch(client, "boom")
            assert (text(result), served_by(result)) == ("v1:boom", "v1")
        assert text(await _fetch(client, pin="v2")) == "v2:u1"  # a pin still reaches it
        assert error_code(await _fetch(client, "boom", pin="v2")) == "internal_error"
        assert rollbacks() == 1  # once

    logged = [r for r in caplog.records if getattr(r, EVENT_KEY, {}).get("event") == "canary_rollback"]
    assert len(logged) == 1
    assert logged[0].levelno == logging.WARNING
    event = getattr(logged[0], EVENT_KEY)
    assert {k: event[k] for k in ("tool", "canary", "stable", "calls", "failures", "threshold")} == {
        "tool": TOOL,
        "canary": "v2",
        "stable": "v1",
        "calls": 4,
        "failures": 2,
        "threshold": 0.5,
    }


# ------------------------------------------------------------------ the parts, without processes
def _config(**entry: Any) -> GatewayConfig:
    return parse_gateway_config(
        {
            "upstreams": {"users_v1": users_upstream("v1"), "users_v2": users_upstream("v2")},
            "versions": {TOOL: versioned(**entry)},
        }
    )


def test_outcomes_that_count_against_a_canary() -> None:
    def result(code: str | None) -> CallToolResult:
        meta = {"mcplane/error": {"code": code}} if code else None
        return CallToolResult(content=[TextContent(type="text", text="x")], is_error=True, _meta=meta)

    assert result_failed(CallToolResult(content=[])) is False
    assert result_failed(result("upstream_error")) is True
    assert result_failed(result(None)) is True  # a plain server's crash report
    assert result_failed(result("invalid_arguments")) is None
    assert exception_failed(DependencyUnavailable("down")) is True
    assert exception_failed(RuntimeError("transport")) is True
    assert exception_failed(NotFound("no")) is None
    assert exception_failed(InvalidArguments("bad")) is None


def test_the_window_slides_on_the_clock() -> None:
    clock = FakeClock()
    window = CanaryWindow(10.0, clock)
    window.add(True)
    clock.now += 5
    window.add(False)
    assert window.counts() == (2, 1)
    clock.now += 6
    assert window.counts() == (1, 0)


def test_a_reload_keeps_an_unchanged_entrys_rollback_and_resets_an_edited_one() -> None:
    metrics = Metrics(CollectorRegistry())

    def weight() -> float | None:
        return metrics.registry.get_sample_value("mcplane_canary_weight", {"tool": TOOL})

    entry: dict[str, Any] = {"canary": {"version": "v2", "weight": 0.5}, "rollback": {"min_calls": 1}}
    router = VersionRouter(_config(**entry), clock=FakeClock(), rand=lambda: 0.0, metrics=metrics)
    router.publish()
    assert weight() == 0.5
    router.record(Route(TOOL, "v2", "users_v2__fetch_user"), failed=None)  # the caller's mistake: nothing
    assert not router.tools[TOOL].rolled_back
    router.record(Route(TOOL, "v2", "users_v2__fetch_user"), failed=True)
    assert router.tools[TOOL].rolled_back
    assert router.tools[TOOL].weight == 0.0
    assert weight() == 0.0

    same = router.reconfigured(_config(**entry))
    assert same.tools[TOOL].rolled_back  # an unrelated reload does not re-arm a broken canary
    assert weight() == 0.0
    edited = router.reconfigured(_config(**{**entry, "canary": {"version": "v2", "weight": 0.2}}))
    assert not edited.tools[TOOL].rolled_back
    assert edited.tools[TOOL].weight == 0.2
    assert weight() == 0.2
    assert edited.route(TOOL, cast(Any, _NoPin())).version == "v2"  # rand 0.0 < 0.2
    edited.reconfigured(_config())  # the canary is gone
    assert weight() == 0.0


class _NoPin:
    request_meta: dict[str, Any] = {}
    headers = None


@pytest.mark.parametrize(
    ("entry", "extra", "expected"),
    [
        ({"default": "v3"}, {}, "versions.users__fetch_user: default: 'v3' is not one of the versions (v1, v2)"),
        ({"canary": {"version": "v9", "weight": 0.1}}, {}, "canary.version: 'v9' is not one of the versions"),
        ({"canary": {"version": "v1", "weight": 0.1}}, {}, "the canary must differ from the default version"),
        ({"canary": {"version": "v2", "weight": 1.5}}, {}, "versions.users__fetch_user.canary.weight"),
        ({"rollback": {"window": "soon"}}, {}, "versions.users__fetch_user.rollback.window"),
        ({"rollback": {"error_rate": 0}}, {}, "versions.users__fetch_user.rollback.error_rate"),
        ({"versions": {"v1": {"upstream": "nope"}}}, {}, "versions.users__fetch_user.versions.v1.upstream: unknown"),
        ({"versions": {"v 1": {"upstream": "users_v1"}}, "default": "v 1"}, {}, "version 'v 1': expected letters"),
        ({"versions": {"v1": {"upstream": "users_v1", "tool": "a/b"}}}, {}, "versions.v1.tool: expected a tool name"),
        (
            {"versions": {"v1": {"upstream": "users_v1", "tool": "fetch_user"}}, "default": "v1"},
            {"name": "users_v1__fetch_user"},
            "the name is version 'v1'",
        ),
        ({}, {"reload": {"interval": "0s"}}, "reload.interval"),
        ({}, {"reload": {"whatch": True}}, "reload.whatch: Extra inputs"),
    ],
)
def test_version_config_errors_name_their_key_path(entry: dict[str, Any], extra: dict[str, Any], expected: str) -> None:
    name = extra.pop("name", TOOL)
    tree = {
        "upstreams": {"users_v1": users_upstream("v1"), "users_v2": users_upstream("v2")},
        "versions": {name: {**versioned(), **entry}},
        **extra,
    }
    with pytest.raises(ConfigError) as info:
        parse_gateway_config(tree, source="gateway.yaml")
    assert info.value.message.startswith("gateway.yaml: ")
    assert expected in info.value.message


def test_rollback_can_be_turned_off() -> None:
    for off in ("off", False, None):
        assert _config(canary={"version": "v2", "weight": 0.5}, rollback=off).versions[TOOL].rollback is None
