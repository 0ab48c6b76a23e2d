"""Large answers through the gateway's lean lane: any size up to the cap streams through (the pool
no longer stalls a connection that buffered 1 MiB), and a larger one is a clear, non-retryable
``upstream_error``, on every lane."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from mcp import Client

from mcplane.gateway import Gateway
from mcplane.gateway import pool as pool_module
from tests.conftest import ServerProcess, error_of, start_server

HOSTILE_APP = Path(__file__).resolve().parents[1] / "fuzz" / "hostile_app.py"


@pytest.fixture(scope="module")
def big_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The hostile plane, allowed to answer up to 64 MiB (so the gateway's own cap is what bites)."""
    tmp = tmp_path_factory.mktemp("big-upstream")
    config = tmp / "mcplane.yaml"
    config.write_text(yaml.safe_dump({"limits": {"max_result_bytes": 64 * 1024 * 1024}}))
    server = start_server(HOSTILE_APP, tmp_path=tmp, extra_args=("--config", str(config)))
    yield server
    server.stop()


@pytest.fixture(params=["lean", "lean-httpx", "sdk"])
def lane(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "lean-httpx":
        monkeypatch.setattr(pool_module, "available", False)
    return str(request.param)


@pytest.mark.timeout(60)
async def test_answers_above_a_mebibyte_stream_through_and_oversized_ones_are_refused(
    big_upstream: ServerProcess, lane: str
) -> None:
    upstream = {"endpoints": [{"url": big_upstream.url}], "lean": lane != "sdk", "retries": {"attempts": 2}}
    gateway = Gateway.from_config({"server": {"default_timeout": "30s"}, "upstreams": {"up": upstream}})
    async with Client(gateway.sdk, mode="2026-07-28") as client:
        two_mb = await client.call_tool("up__blob", {"n": 2 * 1024 * 1024})
        assert two_mb.is_error is False, two_mb
        assert two_mb.structured_content == {"result": "x" * 2 * 1024 * 1024}
        oversized = await client.call_tool("up__blob", {"n": 20 * 1024 * 1024})
    error = error_of(oversized)
    assert (error["code"], error["retryable"]) == ("upstream_error", False)
    assert error["details"] == {"limit_bytes": 16 * 1024 * 1024}
