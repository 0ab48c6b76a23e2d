"""Losing Redis under real ``mcplane run`` servers, and getting it back without a restart.

A private ``redis-server`` backs the rate limit, the cache and the session state of two servers
(one with ``rate_limit.fail_open``). While it is down: ``/ready`` is 503 naming redis, the rate
limit and the state fail closed with ``dependency_unavailable`` (or the limit lets calls through
when configured to), the cache serves misses. Restarted on the same port, everything answers
again by itself.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
import yaml
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult, RequestParamsMeta

from tests.conftest import ServerProcess, error_of, start_server

from .conftest import redis_binary
from .harness import PrivateRedis, free_port

APP = Path(__file__).with_name("outage_app.py")
META: RequestParamsMeta = {"mcplane/conversation": f"outage-{uuid.uuid4()}"}


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[PrivateRedis, ServerProcess, ServerProcess]]:
    redis = PrivateRedis(redis_binary(), free_port())
    redis.start_sync()
    started: list[ServerProcess] = []
    try:
        for fail_open in (False, True):
            config: dict[str, Any] = {
                "redis_url": redis.url,
                "redis": {"socket_timeout": "1s", "connect_timeout": "1s"},
                "rate_limit": {"backend": "redis", "fail_open": fail_open},
                "cache": {"backend": "redis"},
                "state": {"backend": "redis"},
            }
            path = tmp_path / f"mcplane-{fail_open}.yaml"
            path.write_text(yaml.safe_dump(config))
            started.append(start_server(APP, tmp_path=tmp_path, extra_args=("--config", str(path))))
        yield redis, started[0], started[1]
    finally:
        for server in started:
            server.stop()
        redis.stop()


@asynccontextmanager
async def connect(server: ServerProcess) -> AsyncGenerator[Client]:
    async with (
        httpx2.AsyncClient(timeout=httpx2.Timeout(15.0)) as http,
        Client(streamable_http_client(server.url, http_client=http), mode="2026-07-28") as client,
    ):
        yield client


async def call(client: Client, tool: str, arguments: dict[str, Any] | None = None) -> CallToolResult:
    with anyio.fail_after(15):
        return await client.call_tool(tool, arguments or {}, meta=META)


def code(result: CallToolResult) -> str | None:
    if not result.is_error:
        return None
    return error_of(result)["code"]


async def ready(server: ServerProcess) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as http:
        return await http.get(f"{server.base}/ready")


async def wait_ready(server: ServerProcess, status: int) -> httpx.Response:
    with anyio.fail_after(30):
        while True:
            response = await ready(server)
            if response.status_code == status:
                return response
            await anyio.sleep(0.05)


async def test_redis_loss_fails_each_layer_as_configured_and_recovery_needs_no_restart(
    servers: tuple[PrivateRedis, ServerProcess, ServerProcess],
) -> None:
    redis, closed, open_ = servers
    async with connect(closed) as a, connect(open_) as b:
        assert code(await call(a, "limited")) is None
        assert code(await call(a, "cached", {"key": "x"})) is None
        assert (await call(a, "remember")).structured_content == {"result": 1}
        assert (await ready(closed)).status_code == 200

        redis.stop()
        down = await wait_ready(closed, 503)
        assert down.json()["checks"]["redis"] == "redis unreachable"
        assert (await ready(open_)).status_code == 503  # fail_open changes the calls, not readiness

        limited = await call(a, "limited")
        assert code(limited) == "dependency_unavailable"
        assert error_of(limited)["retryable"] is True
        assert code(await call(b, "limited")) is None  # rate_limit.fail_open: true lets it through
        assert code(await call(a, "remember")) == "dependency_unavailable"  # state always fails closed
        misses = [await call(a, "cached", {"key": "x"}) for _ in range(2)]  # cache fails open: misses, not errors
        assert [code(result) for result in misses] == [None, None]
        runs = [result.structured_content for result in misses]
        assert runs[0] != runs[1]  # the tool really ran each time (nothing was served from a cache)

        await redis.start()  # the same port, an empty Redis
        await wait_ready(closed, 200)
        await wait_ready(open_, 200)
        assert code(await call(a, "limited")) is None
        assert (await call(a, "remember")).structured_content == {"result": 1}
        first = await call(a, "cached", {"key": "y"})
        assert (await call(a, "cached", {"key": "y"})).structured_content == first.structured_content  # a hit again
    for server in (closed, open_):
        assert "Traceback" not in server.stderr()
