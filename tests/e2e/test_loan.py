"""The loan example end to end: two real ``mcplane run`` replicas sharing a private Redis, each step
of one conversation sent to a different replica (2026-07-28, stateless HTTP, the conversation id
in ``_meta``), and the same flow failing cleanly when a step is skipped."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncGenerator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult, RequestParamsMeta

from tests.backends.harness import PrivateRedis
from tests.conftest import REPO_ROOT, ServerProcess, error_of, free_port, start_server

APP = REPO_ROOT / "examples" / "loan" / "server.py"
CONFIG = REPO_ROOT / "examples" / "loan" / "mcplane.yaml"
MODERN = "2026-07-28"


@dataclass
class Replicas:
    a: ServerProcess
    b: ServerProcess
    redis: PrivateRedis


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (the replicas share a private Redis)")
    tmp = tmp_path_factory.mktemp("loan")
    redis = PrivateRedis(binary, free_port())
    redis.start_sync()
    servers: list[ServerProcess] = []
    try:
        for _ in range(2):
            servers.append(
                start_server(APP, tmp_path=tmp, env={"REDIS_URL": redis.url}, extra_args=("--config", str(CONFIG)))
            )
        yield Replicas(servers[0], servers[1], redis)
    finally:
        for server in servers:
            server.stop()
        redis.stop()


@asynccontextmanager
async def connect(server: ServerProcess, mode: str = MODERN) -> AsyncGenerator[Client]:
    async with (
        httpx2.AsyncClient(timeout=httpx2.Timeout(15.0)) as http,
        Client(streamable_http_client(server.url, http_client=http), mode=mode) as client,
    ):
        yield client


class Conversation:
    """One loan application; every step goes to the replica the test names."""

    def __init__(self, clients: dict[str, Client]) -> None:
        self.clients = clients
        self.meta: RequestParamsMeta = {"mcplane/conversation": f"loan-{uuid.uuid4()}"}

    async def step(self, replica: str, tool: str, arguments: dict[str, Any] | None = None) -> CallToolResult:
        with anyio.fail_after(15):
            return await self.clients[replica].call_tool(tool, arguments or {}, meta=self.meta)


def value(result: CallToolResult) -> Any:
    assert result.is_error is False, result
    assert result.structured_content is not None
    return result.structured_content


def error(result: CallToolResult) -> dict[str, Any]:
    assert result.is_error is True, result
    return error_of(result)


@asynccontextmanager
async def both(replicas: Replicas) -> AsyncGenerator[dict[str, Client]]:
    async with connect(replicas.a) as a, connect(replicas.b) as b:
        yield {"a": a, "b": b}


async def test_each_step_on_another_replica_completes_the_flow(replicas: Replicas) -> None:
    async with both(replicas) as clients:
        ada = Conversation(clients)
        assert value(await ada.step("a", "fetch_user", {"user_id": "u1"})) == {"id": "u1", "name": "Ada"}
        assert value(await ada.step("b", "check_credit")) == {"score": 780, "good": True}
        decided = value(await ada.step("a", "decide", {"amount": 30_000}))
        assert decided == {"user_id": "u1", "amount": 30_000, "decision": "approved", "reason": "ok"}
        # the first decision is final, whichever replica is asked again
        assert value(await ada.step("b", "decide", {"amount": 999_999})) == decided

        linus = Conversation(clients)  # a second conversation at the same time: its own state
        value(await linus.step("b", "fetch_user", {"user_id": "u2"}))
        assert value(await linus.step("a", "check_credit")) == {"score": 560, "good": False}
        assert value(await linus.step("b", "decide", {"amount": 1_000}))["decision"] == "denied"


async def test_a_skipped_step_fails_cleanly_and_the_servers_carry_on(replicas: Replicas) -> None:
    async with both(replicas) as clients:
        flow = Conversation(clients)
        skipped = error(await flow.step("b", "decide", {"amount": 10}))
        assert skipped["code"] == "invalid_arguments"
        assert skipped["message"] == "decide needs fetch_user to run first in this conversation"
        assert skipped["details"] == {"step": "decide", "missing_step": "fetch_user"}
        assert error(await flow.step("a", "check_credit"))["details"]["missing_step"] == "fetch_user"

        value(await flow.step("a", "fetch_user", {"user_id": "u1"}))
        credit_skipped = error(await flow.step("b", "decide", {"amount": 10}))
        assert credit_skipped["details"] == {"step": "decide", "missing_step": "check_credit"}

        value(await flow.step("b", "check_credit"))  # back on track: the flow completes
        assert value(await flow.step("a", "decide", {"amount": 10}))["decision"] == "approved"

        without_id = await clients["a"].call_tool("check_credit", {})
        assert error(without_id)["code"] == "invalid_arguments"
        assert "mcplane/conversation" in error(without_id)["message"]
    async with httpx.AsyncClient(timeout=5) as http:
        for server in (replicas.a, replicas.b):
            assert (await http.get(f"{server.base}/ready")).status_code == 200
            assert "Traceback" not in server.stderr()


async def test_a_2025_11_25_session_is_the_scope_without_a_conversation_id(replicas: Replicas) -> None:
    async with connect(replicas.a, mode="legacy") as client:
        with anyio.fail_after(15):
            value(await client.call_tool("fetch_user", {"user_id": "u1"}))
            value(await client.call_tool("check_credit", {}))
            assert value(await client.call_tool("decide", {"amount": 5}))["decision"] == "approved"
    async with connect(replicas.a, mode="legacy") as fresh:  # a new session starts with nothing
        with anyio.fail_after(15):
            assert error(await fresh.call_tool("decide", {"amount": 5}))["details"]["missing_step"] == "fetch_user"
