"""Config reload: in-process (the reloader's steps, one at a time) and through a real
``mcplane gateway`` process (SIGHUP, a rewritten file, a refused file), with calls in flight."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Any

import anyio
import httpx
import psutil
import pytest
from mcp import Client

from mcplane import Plane
from mcplane.gateway import Gateway
from mcplane.gateway.reload import Reloader
from mcplane.observability.logs import EVENT_KEY
from tests.gateway.conftest import start_gateway, stop_process
from tests.gateway.versions_support import eventually, served_by, text, users_upstream, versioned, write_config
from tests.observability.support import events, modern_call, modern_headers

TOOL = "users__fetch_user"


def _tree(default: str = "v1", *, v1: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "server": {"default_timeout": "60s"},
        "upstreams": {"users_v1": v1 or users_upstream("v1"), "users_v2": users_upstream("v2")},
        "versions": {TOOL: versioned(default)},
        **extra,
    }


def _reloader(plane: Plane) -> Reloader:
    reloader = Gateway.provider_of(plane).reloader
    assert reloader is not None
    return reloader


async def _served(client: Client) -> str:
    return text(await client.call_tool(TOOL, {"user_id": "u1"}))


# ------------------------------------------------------------------ in-process
async def test_a_reload_switches_the_default_and_keeps_unchanged_connections(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    file = tmp_path / "gateway.yaml"
    write_config(file, _tree("v1", reload={"watch": False}))
    plane = Gateway.from_config(file, reload=True)
    provider = Gateway.provider_of(plane)
    caplog.set_level(logging.INFO, logger="mcplane.gateway")
    async with Client(plane.sdk, mode="legacy") as client:
        assert await _served(client) == "v1:u1"
        endpoint = provider.upstreams["users_v1"].endpoints[0]
        reloader = _reloader(plane)
        assert not await reloader.check()  # nothing changed: nothing done

        write_config(file, _tree("v2", reload={"watch": False}))
        assert await reloader.check()
        result = await client.call_tool(TOOL, {"user_id": "u1"})
        assert (text(result), served_by(result)) == ("v2:u1", "v2")
        assert provider.upstreams["users_v1"].endpoints[0] is endpoint  # unchanged: not reconnected
        assert endpoint.connections == 1
        assert reloader.reloads == 1

        write_config(file, _tree("v2", reload={"watch": False}, server={"default_timeout": "5s"}))
        assert await reloader.reload()
    reloaded = [getattr(r, EVENT_KEY) for r in caplog.records if hasattr(r, EVENT_KEY)]
    assert {"event": "config_reloaded", "versions_changed": [TOOL], "upstreams_changed": []}.items() <= {
        **reloaded[0]
    }.items()
    assert any(e["event"] == "config_not_reloaded" and e["sections"] == ["server"] for e in reloaded)


async def test_an_invalid_file_is_refused_and_the_old_config_keeps_serving(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    file = tmp_path / "gateway.yaml"
    write_config(file, _tree("v1", reload={"watch": False}))
    plane = Gateway.from_config(file, reload=True)
    caplog.set_level(logging.INFO, logger="mcplane.gateway")
    async with Client(plane.sdk, mode="legacy") as client:
        reloader = _reloader(plane)
        bad = _tree("v1")
        bad["versions"][TOOL]["versions"]["v2"]["upstream"] = "users_v3"
        write_config(file, bad)
        assert not await reloader.check()
        assert reloader.last_error is not None
        assert "versions.users__fetch_user.versions.v2.upstream: unknown upstream 'users_v3'" in reloader.last_error
        assert not await reloader.check()  # the same bad content is not tried again and again
        assert reloader.failures == 1
        for broken in ("upstreams: [oops\n", "", "upstreams: {a: {endpoints: []}}\n"):
            file.write_text(broken)
            assert not await reloader.reload()
        assert reloader.failures == 4
        assert await _served(client) == "v1:u1"
    refused = [getattr(r, EVENT_KEY) for r in caplog.records if getattr(r, EVENT_KEY, {}).get("event")]
    assert [e["event"] for e in refused] == ["config_reload_failed"] * 4
    assert "not valid YAML" in refused[1]["error"]
    assert "the file is empty" in refused[2]["error"]
    assert "upstreams.a.endpoints" in refused[3]["error"]


async def test_a_changed_upstream_is_replaced_and_its_call_in_flight_finishes(tmp_path: Path) -> None:
    file = tmp_path / "gateway.yaml"
    write_config(file, _tree("v1", reload={"watch": False}))
    plane = Gateway.from_config(file, reload=True)
    provider = Gateway.provider_of(plane)
    gate = tmp_path / "gate"
    old = provider.upstreams["users_v1"]
    slow: list[str] = []
    async with Client(plane.sdk, mode="legacy") as client, anyio.create_task_group() as tg:

        async def slow_call() -> None:
            arguments = {"user_id": "u1", "gate": str(gate)}
            slow.append(text(await client.call_tool("users_v1__slow_fetch_user", arguments)))

        tg.start_soon(slow_call)
        await eventually(_exists(Path(f"{gate}.started")), what="the slow call to start")

        write_config(file, _tree("v1", v1=users_upstream("v1b"), reload={"watch": False}))
        assert await _reloader(plane).reload()
        assert provider.upstreams["users_v1"] is not old
        assert await _served(client) == "v1b:u1"  # new calls: the new connection
        assert old.endpoints[0].connected  # the old one drains ...
        gate.write_text("")
        await eventually(_is(lambda: slow or None), what="the slow call to finish")
        assert slow == ["v1:u1"]  # ... and it finished on it
        await eventually(_is(lambda: not old.endpoints[0].connected), what="the old connection to close")
        ready = await plane.readiness()  # /ready now follows the new connection, not the closed one
        assert ready["upstream:users_v1"] == (True, "ok")


def _exists(path: Path) -> Any:
    async def probe() -> bool | None:
        return True if await anyio.Path(path).exists() else None

    return probe


def _is(condition: Any) -> Any:
    async def probe() -> bool | None:
        return True if condition() else None

    return probe


# ------------------------------------------------------------------ a real gateway process
def _logged(stderr: Path, event: str) -> list[dict[str, Any]]:
    return [e for e in events(stderr.read_text(encoding="utf-8", errors="replace")) if e.get("event") == event]


async def test_sighup_switches_versions_in_a_running_gateway_without_dropping_a_call(tmp_path: Path) -> None:
    config, stderr = tmp_path / "gateway.yaml", tmp_path / "gateway.stderr"
    write_config(config, _tree("v1", reload={"watch": False}))  # only the signal reloads here
    proc, port = start_gateway(config, stderr)
    gate = tmp_path / "gate"
    try:
        async with Client(f"http://127.0.0.1:{port}/mcp", mode="legacy") as client:  # pyright: ignore[reportArgumentType]
            assert await _served(client) == "v1:u1"
            users_v1 = _upstream_processes(proc.pid, "v1")
            slow: list[str] = []
            async with anyio.create_task_group() as tg:

                async def slow_call() -> None:
                    arguments = {"user_id": "u1", "gate": str(gate)}
                    slow.append(text(await client.call_tool("users_v1__slow_fetch_user", arguments)))

                tg.start_soon(slow_call)
                await eventually(_exists(Path(f"{gate}.started")), what="the slow call to start")

                # users_v1 goes away and v2 becomes the default: SIGHUP, same process, same session.
                new = _tree("v2", reload={"watch": False})
                del new["upstreams"]["users_v1"]
                new["versions"][TOOL]["versions"].pop("v1")
                write_config(config, new)
                proc.send_signal(signal.SIGHUP)

                async def switched() -> bool | None:
                    return True if await _served(client) == "v2:u1" else None

                await eventually(switched, what="v2 to serve after SIGHUP")
                names = {tool.name for tool in (await client.list_tools()).tools}
                assert "users_v1__fetch_user" not in names
                assert users_v1
                assert all(p.is_running() for p in users_v1)  # draining: its call is in flight
                gate.write_text("")
            assert slow == ["v1:u1"]  # the call started before the reload finished on the old connection
            _, alive = psutil.wait_procs(users_v1, timeout=20)
            assert not alive, "the removed upstream's process should exit once drained"
        assert proc.poll() is None  # the same process serves on
        (reloaded,) = _logged(stderr, "config_reloaded")
        assert reloaded["trigger"] == "SIGHUP"
        assert reloaded["upstreams_removed"] == ["users_v1"]
    finally:
        stop_process(proc)


def _upstream_processes(gateway: int, version: str) -> list[psutil.Process]:
    """The gateway's upstream processes started with ``USERS_VERSION=version``."""
    found: list[psutil.Process] = []
    for child in psutil.Process(gateway).children(recursive=True):
        try:
            if child.environ().get("USERS_VERSION") == version:
                found.append(child)
        except psutil.Error:
            continue
    return found


async def test_a_rewritten_file_is_picked_up_and_a_bad_one_refused(tmp_path: Path) -> None:
    config, stderr = tmp_path / "gateway.yaml", tmp_path / "gateway.stderr"
    write_config(config, _tree("v1", reload={"interval": "100ms"}))
    proc, port = start_gateway(config, stderr)
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        async with Client(url, mode="legacy") as client:  # pyright: ignore[reportArgumentType]
            assert await _served(client) == "v1:u1"
            write_config(config, _tree("v2", reload={"interval": "100ms"}))  # no signal

            async def switched() -> bool | None:
                return True if await _served(client) == "v2:u1" else None

            await eventually(switched, what="the rewritten file to be applied")

            bad = _tree("v1", reload={"interval": "100ms"})
            bad["versions"][TOOL]["default"] = "v3"
            write_config(config, bad)
            await eventually(_is(lambda: _logged(stderr, "config_reload_failed") or None), what="the refusal")
            (refused,) = _logged(stderr, "config_reload_failed")
            assert "versions.users__fetch_user: default: 'v3' is not one of the versions" in refused["error"]
            assert await _served(client) == "v2:u1"  # the last good config serves on

        async with httpx.AsyncClient(timeout=30) as http:  # a pin by header, on a stateless request
            headers = {**modern_headers(TOOL), "Mcplane-Tool-Version": "v1"}
            answer = await http.post(url, json=modern_call(TOOL, {"user_id": "u9"}), headers=headers)
        result = answer.json()["result"]
        assert result["content"][0]["text"] == "v1:u9"
        assert result["_meta"]["mcplane/version"] == "v1"
        assert proc.poll() is None
    finally:
        stop_process(proc)
