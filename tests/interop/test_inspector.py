"""The MCP Inspector CLI, ``@modelcontextprotocol/inspector`` 0.15.0 and 2.12.0, against mcplane.

Each step is one ``inspector --cli`` invocation: a new client process and connection (and over
stdio a new server process) that lists the tools, does one thing and prints JSON. What they speak:

- 0.15.0 is built on the TypeScript SDK 1.x: 2025-11-25 only. It prints the result and exits 0
  (``isError`` results too); a JSON-RPC error is one ``MCP error <code>: <message>`` line on stderr
  with exit 1, without its ``data``. It converts ``--tool-arg`` values by the tool's input schema.
- 2.12.0 is built on the TypeScript SDK 2.x: ``--protocol-era legacy`` (2025-11-25) or ``modern``
  (2026-07-28). ``--format json`` prints ``{"result": ...}`` (exit 5 for an ``isError`` result) or
  ``{"error": {"code", "message"}}`` on stderr without the JSON-RPC code or ``data``. It refuses
  to call a tool the server did not list (so an unknown tool never reaches the server) and sends
  ``--tool-metadata`` as the request's ``_meta``.

Neither shows progress, cancels a call or answers elicitation (the CLI declares no elicitation
capability), so those cases are not theirs. Over stdio each step starts the server anew, so cases
that need state across steps (a rate limit's second call, a breaker opened by the first) run only
over HTTP, and the stdio cells run a small subset (each step there costs a server start).
Steps of different cases run side by side.
"""

from __future__ import annotations

import json
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO_ROOT
from tests.interop.conftest import INTEROP, NODE22, Servers, node_env, require
from tests.interop.matrix import (
    CALLS_UNLISTED,
    LEGACY,
    META,
    MODERN,
    ONE_SERVER,
    TARGETS,
    Case,
    Cell,
    Outcome,
    Step,
    cases_for,
    params,
)

INSPECTORS = {
    "0.15.0": INTEROP / "inspector-0.15" / "node_modules" / ".bin" / "mcp-inspector",
    "2.12.0": INTEROP / "inspector-2.12" / "node_modules" / ".bin" / "inspector",
}
STEP_TIMEOUT = 60.0
PARALLEL = 3
ERROR_CASES = (
    "tools_list",
    "ok_typed_model",
    "invalid_arguments",
    "not_found",
    "timeout",
    "internal_error",
    "forbidden",
    "budget_exceeded",
    "dependency_unavailable",
    "upstream_error",
)
"""The HTTP cells of each Inspector's newest era: the listing, a typed success and each error code
one call can meet."""
PLANE_EXTRAS = ("rate_limited", "deadline_exceeded", "unknown_tool", "unknown_prompt", "resources", "prompts")
GATEWAY_EXTRAS = ("deadline_exceeded", "circuit_open")
"""In the HTTP cells of each Inspector's newest era: what takes several steps, state or a pinned
``_meta``, and listing and reading resources and prompts (on the plane; the SDK clients cover
them through the gateway)."""
OLDER_ERA_CASES = ("tools_list", "ok_typed_model", "invalid_arguments", "internal_error", "dependency_unavailable")
"""The HTTP cells of the 2.x Inspector's older era (2025-11-25): the same client code in the
other era, so the listing, a success and the typed failures."""
STDIO_CASES = ("internal_error",)
"""Over stdio (a server start per step): one typed tool's failure, the strict-client regression
(the CLI lists the tools, so primes its output-schema check, before it calls)."""

CELLS = [
    *(Cell("inspector-0.15.0", transport, LEGACY, target) for transport in ("stdio", "http") for target in TARGETS),
    *(
        Cell("inspector-2.12.0", transport, era, target)
        for transport in ("stdio", "http")
        for era in (LEGACY, MODERN)
        for target in TARGETS
    ),
]


def _version(cell: Cell) -> str:
    return cell.client.removeprefix("inspector-")


def _has(cell: Cell) -> frozenset[str]:
    has = {ONE_SERVER} if cell.transport == "http" else set()
    has.add(META if _version(cell) == "2.12.0" else CALLS_UNLISTED)
    return frozenset(has)


def _only(cell: Cell) -> tuple[str, ...]:
    if cell.transport == "stdio":
        return STDIO_CASES
    newest = MODERN if _version(cell) == "2.12.0" else LEGACY
    if cell.era != newest:
        return OLDER_ERA_CASES
    return (*ERROR_CASES, *(GATEWAY_EXTRAS if cell.target.gateway else PLANE_EXTRAS))


def _method_args(step: Step, version: str) -> list[str]:
    op = step["op"]
    if op == "listTools":
        return ["--method", "tools/list"]
    if op == "callTool":
        args = ["--method", "tools/call", "--tool-name", step["name"]]
        if version == "2.12.0":
            args += ["--tool-args-json", json.dumps(step["arguments"])]
            for key, value in (step.get("meta") or {}).items():
                args += ["--tool-metadata", f"{key}={value}"]
        elif step["arguments"]:  # 0.15.0: key=value strings, converted by the tool's input schema
            args += ["--tool-arg", *(f"{key}={value}" for key, value in step["arguments"].items())]
        return args
    if op == "listResources":
        return ["--method", "resources/list"]
    if op == "listResourceTemplates":
        return ["--method", "resources/templates/list"]
    if op == "readResource":
        return ["--method", "resources/read", "--uri", step["uri"]]
    if op == "listPrompts":
        return ["--method", "prompts/list"]
    if op == "getPrompt":
        args = ["--method", "prompts/get", "--prompt-name", step["name"]]
        if step.get("arguments"):
            args += ["--prompt-args", *(f"{key}={value}" for key, value in step["arguments"].items())]
        return args
    raise AssertionError(f"the Inspector CLI has no {op}")


def _command(cell: Cell, step: Step, servers: Servers, binary: Path) -> tuple[list[str], dict[str, str]]:
    version = _version(cell)
    method = _method_args(step, version)
    env = node_env()
    if version == "2.12.0":
        head = [
            str(binary),
            "--cli",
            "--format",
            "json",
            "--protocol-era",
            "modern" if cell.era == MODERN else "legacy",
        ]
        if cell.transport == "http":
            return [*head, *method, "--transport", "http", servers.url(cell.target)], env
        stdio = servers.stdio(cell.target)
        extra = [arg for key, value in stdio.env.items() for arg in ("-e", f"{key}={value}")]
        return [*head, *extra, "--cwd", str(REPO_ROOT), *method, "--", stdio.command, *stdio.args], env
    if cell.transport == "http":
        return [str(binary), "--cli", servers.url(cell.target), "--transport", "http", *method], env
    stdio = servers.stdio(cell.target)
    args = stdio.args
    if cell.target.gateway:
        # 0.15.0 reads every --option on its command line as its own (it has --transport too), so
        # the gateway's `--transport stdio` goes in as Python code instead.
        args = ["-c", "import sys; from mcplane.gateway.cli import main; sys.exit(main(['--transport', 'stdio']))"]
    return [str(binary), "--cli", stdio.command, *args, *method], {**env, **stdio.env}


_MCP_ERROR = re.compile(r"MCP error (-?\d+): (.*)")


def _outcome(cell: Cell, completed: subprocess.CompletedProcess[str]) -> Outcome:
    if _version(cell) == "2.12.0":
        if completed.returncode in (0, 5) and completed.stdout.strip():  # 5: an isError tool result
            return {"ok": True, "result": json.loads(completed.stdout)["result"]}
        lines = [line for line in completed.stderr.splitlines() if line.startswith('{"error"')]
        assert lines, f"no result and no error envelope (exit {completed.returncode}):\n{completed.stderr[-3000:]}"
        envelope = json.loads(lines[-1])["error"]
        error = {"code": None, "message": envelope["message"], "data": None, "cli_code": envelope["code"]}
        return {"ok": False, "error": error, "error_data": False}
    if completed.returncode == 0:
        return {"ok": True, "result": json.loads(completed.stdout)}
    match = _MCP_ERROR.search(completed.stderr)
    assert match, f"exit {completed.returncode} without an MCP error:\n{completed.stderr[-3000:]}"
    error = {"code": int(match.group(1)), "message": match.group(2), "data": None}
    return {"ok": False, "error": error, "error_data": False}


def _run_step(cell: Cell, step: Step, servers: Servers, binary: Path, home: Path) -> Outcome:
    command, env = _command(cell, step, servers, binary)
    completed = subprocess.run(
        command,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**env, "HOME": str(home)},  # the 2.x CLI keeps a catalog and client config under HOME
        stdin=subprocess.DEVNULL,
        timeout=STEP_TIMEOUT,
        check=False,
    )
    return _outcome(cell, completed)


_reports: dict[str, dict[str, list[Outcome]]] = {}


@pytest.fixture(scope="module")
def outcomes_of(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Any:
    home = tmp_path_factory.mktemp("inspector-home")

    def get(cell: Cell) -> dict[str, list[Outcome]]:
        if str(cell) not in _reports:
            require(NODE22, "Node 22")
            binary = require(INSPECTORS[_version(cell)], f"@modelcontextprotocol/inspector@{_version(cell)}")
            cases = cases_for(cell.target, _has(cell), _only(cell))

            def run_case(case: Case) -> list[Outcome]:
                steps = case.steps(cell.target, f"{cell}-{case.id}")
                return [_run_step(cell, step, servers, binary, home) for step in steps]

            with ThreadPoolExecutor(PARALLEL) as pool:
                _reports[str(cell)] = dict(zip([c.id for c in cases], pool.map(run_case, cases), strict=True))
        return _reports[str(cell)]

    return get


@pytest.mark.parametrize(("cell", "case"), params(CELLS, _has, _only))
def test_case(cell: Cell, case: Case, outcomes_of: Any) -> None:
    case.check(cell, outcomes_of(cell)[case.id])
