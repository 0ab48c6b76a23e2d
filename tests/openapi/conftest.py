"""The real REST service the OpenAPI tests call (``rest_app.py`` under uvicorn, its own process)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp_types import CallToolResult

from mcplane import Plane
from mcplane.gateway import Gateway
from tests.conftest import REPO_ROOT, free_port
from tests.gateway.conftest import stop_process, wait_for_port

HERE = Path(__file__).resolve().parent
REST_APP = HERE / "rest_app.py"
SPECS = HERE / "specs"
SHOP = SPECS / "shop.yaml"
GITHUB_SPEC = (
    REPO_ROOT / ".tools" / "openapi" / "node_modules" / "@octokit" / "openapi" / "generated" / "api.github.com.json"
)
"""GitHub's published document (npm @octokit/openapi, installed by scripts/install-test-deps.sh)."""


@dataclass
class RestService:
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stats(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/_stats", timeout=5).json()

    def reset(self) -> None:
        httpx.post(f"{self.url}/_reset", timeout=5)


def start_rest() -> RestService:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(REST_APP), str(port)],
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(port, proc)
    return RestService(port, proc)


@pytest.fixture(scope="module")
def rest() -> Iterator[RestService]:
    service = start_rest()
    yield service
    stop_process(service.proc)


def shop_upstream(rest: RestService, **openapi: Any) -> dict[str, Any]:
    return {"openapi": {"spec": str(SHOP), "base_url": rest.url, "auth": {"bearer": "t0ken"}, **openapi}}


def shop_plane(rest: RestService, upstream: dict[str, Any] | None = None, **options: Any) -> Plane:
    upstream = upstream or shop_upstream(rest)
    tree = {"server": {"default_timeout": "10s"}, "upstreams": {"shop": {**upstream, **options}}}
    return Gateway.from_config(tree)


def error_code(result: CallToolResult) -> str | None:
    body: Any = (result.meta or {}).get("mcplane/error") if result.is_error else None
    return body.get("code") if isinstance(body, dict) else None


def error_body(result: CallToolResult) -> dict[str, Any]:
    assert result.is_error, result
    body: Any = (result.meta or {}).get("mcplane/error")
    assert isinstance(body, dict), result
    return body
