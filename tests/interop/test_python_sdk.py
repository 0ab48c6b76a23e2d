"""The official Python SDK client (``mcp`` 2.3, ``from mcp import Client``) against mcplane.

The SDK speaks both eras: ``mode="legacy"`` is 2025-11-25 (``initialize``, sessions), a
``mode="2026-07-28"`` pin is the stateless era (``server/discover``; elicitation comes back as an
``input_required`` result the client answers and resends). Its cells are stdio and Streamable
HTTP x both eras x {the typed plane, the gateway}; every case of a cell runs on one connection.
Unlike the TypeScript SDK it skips the output-schema check on ``isError`` results, so it is the
reference the stricter clients are held to, not a test of that check.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.context import ClientRequestContext
from mcp_types import ElicitRequestParams, ElicitResult

from tests.conftest import REPO_ROOT
from tests.interop.conftest import Servers
from tests.interop.matrix import (
    CALLS_UNLISTED,
    CANCEL,
    ELICITATION,
    ERROR_DATA,
    LEGACY,
    META,
    MODERN,
    ONE_SERVER,
    PROGRESS,
    TARGETS,
    Case,
    Cell,
    Outcome,
    Step,
    cases_for,
    params,
)

HAS = frozenset({PROGRESS, CANCEL, ELICITATION, META, ONE_SERVER, CALLS_UNLISTED, ERROR_DATA})
MODES = {LEGACY: "legacy", MODERN: MODERN}
CELL_TIMEOUT = 90.0

CELLS = [
    Cell("python", transport, era, target)
    for transport in ("stdio", "http")
    for era in (LEGACY, MODERN)
    for target in TARGETS
]


def _dump(value: Any) -> Any:
    return value.model_dump(mode="json", by_alias=True, exclude_none=True)


async def _answer_elicitation(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
    return ElicitResult(action="accept", content={"name": "Ada"})


async def _attempt(coro: Any) -> Outcome:
    try:
        return {"ok": True, "result": _dump(await coro)}
    except MCPError as exc:
        return {"ok": False, "error": {"code": exc.error.code, "message": exc.error.message, "data": exc.error.data}}


async def _step(client: Client, step: Step) -> Outcome:
    op = step["op"]
    if op == "listTools":
        return await _attempt(client.list_tools())
    if op == "callTool":
        seen: list[dict[str, Any]] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            seen.append({"progress": progress, "total": total, "message": message})

        callback = on_progress if step.get("progress") else None
        outcome = await _attempt(
            client.call_tool(step["name"], step["arguments"], progress_callback=callback, meta=step.get("meta"))
        )
        return {**outcome, "progress": seen} if callback else outcome
    if op == "elicit":
        return await _attempt(client.call_tool(step["name"], {}))
    if op == "cancelTool":
        call = asyncio.ensure_future(client.call_tool(step["name"], step["arguments"]))
        started = await _attempt(client.call_tool(step["started"]["name"], step["started"]["arguments"]))
        call.cancel()
        try:
            aborted: Outcome = {"ok": True, "result": _dump(await call)}
        except asyncio.CancelledError:
            aborted = {"ok": False, "error": {"code": None, "message": "cancelled by the caller", "data": None}}
        status = await _attempt(client.call_tool(step["status"]["name"], step["status"]["arguments"]))
        return {**status, "started": started, "aborted": aborted}
    if op == "listResources":
        return await _attempt(client.list_resources())
    if op == "listResourceTemplates":
        return await _attempt(client.list_resource_templates())
    if op == "readResource":
        return await _attempt(client.read_resource(step["uri"]))
    if op == "listPrompts":
        return await _attempt(client.list_prompts())
    if op == "getPrompt":
        return await _attempt(client.get_prompt(step["name"], step.get("arguments") or None))
    raise AssertionError(f"unknown op {op}")


def _client(cell: Cell, servers: Servers) -> Client:
    if cell.transport == "http":
        server: Any = servers.url(cell.target)
    else:
        stdio = servers.stdio(cell.target)
        env = {**os.environ, **stdio.env}
        server = StdioServerParameters(command=stdio.command, args=stdio.args, env=env, cwd=str(REPO_ROOT))
    return Client(server, mode=MODES[cell.era], elicitation_callback=_answer_elicitation)


async def _run(cell: Cell, servers: Servers) -> dict[str, list[Outcome]]:
    outcomes: dict[str, list[Outcome]] = {}
    async with _client(cell, servers) as client:
        assert client.protocol_version == cell.era
        await client.list_tools()
        for case in cases_for(cell.target, HAS):
            outcomes[case.id] = [await _step(client, step) for step in case.steps(cell.target, f"{cell}-{case.id}")]
    return outcomes


_reports: dict[str, dict[str, list[Outcome]]] = {}


@pytest.fixture(scope="module")
def outcomes_of(servers: Servers) -> Any:
    def get(cell: Cell) -> dict[str, list[Outcome]]:
        if str(cell) not in _reports:
            _reports[str(cell)] = asyncio.run(asyncio.wait_for(_run(cell, servers), CELL_TIMEOUT))
        return _reports[str(cell)]

    return get


@pytest.mark.parametrize(("cell", "case"), params(CELLS, lambda cell: HAS))
def test_case(cell: Cell, case: Case, outcomes_of: Any) -> None:
    case.check(cell, outcomes_of(cell)[case.id])
