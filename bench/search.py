"""Catalog search on GitHub's REST API: index build time and memory, search latency, relevance.

The catalog is the bench's own stand-in for the OpenAPI provider: one tool per operation of the
GitHub REST description (npm ``@octokit/openapi``, ``generated/api.github.com.json``), named
``github__<operationId>`` (``/`` becomes ``.``), described by its summary and description, its
input schema's properties the operation's parameters (``$ref`` to shared parameters resolved) and
its JSON request body's top-level properties. About 1,200 tools.

Measured, each in this process:

* **build**: :meth:`ToolIndex.build` over the whole catalog (best and median of ``--builds``), and
  the process's resident memory before and after holding one index (tantivy allocates outside
  Python's heap, so ``tracemalloc`` would not see it);
* **search (index)**: one :meth:`ToolIndex.search` resolving the first 10 hits, per query;
* **search (tools/call)**: ``search_tools`` called through a plane in search mode (the whole
  pipeline: errors, metrics, authorization by a glob over every tool, validate, timeout, the
  result built and sent) with the official SDK client in memory, 2026-07-28;
* **relevance**: for queries written as a person would ask, where the intended operation ranks
  (top-1 and top-5 hit rates).

::

    npm install --prefix octokit @octokit/openapi@23.0.2   (any directory)
    python bench/search.py --spec octokit/node_modules/@octokit/openapi/generated/api.github.com.json --write

``--write`` replaces the ``## Catalog search`` section of ``bench/RESULTS.md`` (appended when absent).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from pathlib import Path
from typing import Any

import anyio
import psutil
from mcp import Client
from mcp_types import Tool

from mcplane import Plane
from mcplane.config import PlaneConfig
from mcplane.gateway.config import DiscoveryConfig
from mcplane.gateway.search import CatalogSearch
from mcplane.gateway.search_index import ToolIndex
from mcplane.pipeline import Call
from mcplane.tool_policy import ToolPolicy, ToolSource

METHODS = ("get", "post", "put", "patch", "delete")
RESULTS = Path(__file__).with_name("RESULTS.md")
SECTION = "## Catalog search"

# (query, the operation a person asking it wants)
RELEVANCE: list[tuple[str, str]] = [
    ("list repositories for a user", "repos/list-for-user"),
    ("create an issue", "issues/create"),
    ("merge a pull request", "pulls/merge"),
    ("list workflow runs for a repository", "actions/list-workflow-runs-for-repo"),
    ("star a repository", "activity/star-repo-for-authenticated-user"),
    ("create a gist", "gists/create"),
    ("get the authenticated user", "users/get-authenticated"),
    ("add labels to an issue", "issues/add-labels"),
    ("create a release", "repos/create-release"),
    ("delete branch protection", "repos/delete-branch-protection"),
    ("list commits", "repos/list-commits"),
    ("create a review comment on a pull request", "pulls/create-review-comment"),
    ("search issues and pull requests", "search/issues-and-pull-requests"),
    ("create a repository webhook", "repos/create-webhook"),
    ("list organization members", "orgs/list-members"),
    ("get repository content", "repos/get-content"),
    ("fork a repository", "repos/create-fork"),
    ("add a repository collaborator", "repos/add-collaborator"),
    ("download workflow run logs", "actions/download-workflow-run-logs"),
    ("create or update a repository secret", "actions/create-or-update-repo-secret"),
    ("list issue comments", "issues/list-comments"),
    ("lock an issue", "issues/lock"),
    ("get a commit", "repos/get-commit"),
    ("list pull request files", "pulls/list-files"),
    ("create a deployment", "repos/create-deployment"),
]


def tool_name(operation_id: str) -> str:
    return "github__" + operation_id.replace("/", ".")


def catalog(spec: dict[str, Any]) -> list[Tool]:
    """One tool per operation (the bench's stand-in for the OpenAPI provider's tools)."""
    shared = spec.get("components", {}).get("parameters", {})
    schemas = spec.get("components", {}).get("schemas", {})
    tools: list[Tool] = []
    for item in spec["paths"].values():
        for method, operation in item.items():
            if method not in METHODS:
                continue
            properties: dict[str, Any] = {}
            for parameter in [*item.get("parameters", []), *operation.get("parameters", [])]:
                if "$ref" in parameter:
                    parameter = shared[parameter["$ref"].rsplit("/", 1)[-1]]
                properties[parameter["name"]] = {
                    "type": parameter.get("schema", {}).get("type", "string"),
                    "description": parameter.get("description", ""),
                }
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
            if "$ref" in body:
                body = schemas.get(body["$ref"].rsplit("/", 1)[-1], {})
            for name, spec_ in (body.get("properties") or {}).items():
                properties[name] = {"description": spec_.get("description", "")} if isinstance(spec_, dict) else {}
            description = operation.get("summary", "")
            if operation.get("description"):
                description += "\n\n" + operation["description"]
            tools.append(
                Tool(
                    name=tool_name(operation["operationId"]),
                    title=operation.get("summary"),
                    description=description,
                    input_schema={"type": "object", "properties": properties},
                )
            )
    return tools


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bench_build(tools: list[Tool], builds: int) -> tuple[list[float], int, ToolIndex]:
    process = psutil.Process()
    before = process.memory_info().rss
    times: list[float] = []
    index = ToolIndex.build(tools)
    held = process.memory_info().rss - before
    for _ in range(builds):
        start = time.perf_counter()
        ToolIndex.build(tools)
        times.append(time.perf_counter() - start)
    return times, held, index


def bench_index_search(index: ToolIndex, queries: list[str], rounds: int) -> list[float]:
    latencies: list[float] = []
    for _ in range(rounds):
        for query in queries:
            start = time.perf_counter()
            hits = index.search(query)
            _ = [next(hits, None) for _ in range(10)]
            latencies.append(time.perf_counter() - start)
    return latencies


class _Catalog:
    """A provider that only lists (the bench searches; nothing is called)."""

    def __init__(self, tools: list[Tool]) -> None:
        self.tools = tools

    def owns(self, kind: Any, name: str) -> bool:
        return False

    def policy(self, tool: str) -> ToolPolicy | None:
        return None

    def source(self, tool: str) -> ToolSource | None:
        return None

    def listed(self, kind: Any) -> Sequence[Any]:
        return self.tools if kind == "tool" else []

    async def provide(self, call: Call) -> Any:
        raise AssertionError("not called")

    def open(self, plane: Plane) -> AbstractAsyncContextManager[None]:
        return nullcontext()


async def bench_tools_call(tools: list[Tool], queries: list[str], rounds: int) -> tuple[list[float], float]:
    config = PlaneConfig.model_validate({"authorization": {"default": "allow", "tools": {"github__*": {"roles": []}}}})
    plane = Plane("bench", config=config)
    plane.add_provider(_Catalog(tools))
    search = CatalogSearch(plane, DiscoveryConfig(mode="search"))
    search.install()
    latencies: list[float] = []
    async with Client(plane.sdk, mode="2026-07-28") as client:
        start = time.perf_counter()
        first = await client.call_tool("search_tools", {"query": "warm up"})  # builds the index
        first_call = time.perf_counter() - start
        assert not first.is_error, first
        for _ in range(rounds):
            for query in queries:
                start = time.perf_counter()
                result = await client.call_tool("search_tools", {"query": query})
                latencies.append(time.perf_counter() - start)
                assert not result.is_error, result
    return latencies, first_call


def relevance(index: ToolIndex, known: set[str]) -> tuple[int, int, int, list[str]]:
    top1 = top5 = 0
    misses: list[str] = []
    pairs = [(query, tool_name(op)) for query, op in RELEVANCE if tool_name(op) in known]
    for query, expected in pairs:
        ranked = [name for name, _ in index.search(query)][:5]
        top1 += bool(ranked) and ranked[0] == expected
        top5 += expected in ranked
        if not ranked or ranked[0] != expected:
            rank = ranked.index(expected) + 1 if expected in ranked else "not in top 5"
            misses.append(f"`{query}` → `{expected}`: rank {rank} (first: `{ranked[0] if ranked else '-'}`)")
    return len(pairs), top1, top5, misses


def ms(value: float) -> str:
    return f"{value * 1000:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", type=Path, required=True, help="generated/api.github.com.json of @octokit/openapi")
    parser.add_argument("--builds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=20, help="passes over the query set")
    parser.add_argument("--write", action="store_true", help=f"write the section {SECTION!r} of bench/RESULTS.md")
    args = parser.parse_args()
    tools = catalog(json.loads(args.spec.read_text(encoding="utf-8")))
    queries = [query for query, _ in RELEVANCE]
    builds, held, index = bench_build(tools, args.builds)
    index_latency = bench_index_search(index, queries, args.rounds)
    call_latency, first_call = anyio.run(bench_tools_call, tools, queries, args.rounds)
    total, top1, top5, misses = relevance(index, {tool.name for tool in tools})
    text = sum(len(tool.description or "") for tool in tools)
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    lines = [
        SECTION,
        "",
        f"Generated by `python bench/search.py` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: "
        f"{len(tools)} tools from `{args.spec.name}` (npm `@octokit/openapi`; {text / 1e6:.1f} MB of "
        "descriptions), one tool per operation as the bench builds them (its own stand-in for the OpenAPI "
        "provider's tools: `github__<operationId>`, summary as title, summary and description, parameters and "
        f"JSON body properties). Machine: {os.cpu_count()} CPUs, load average {load} (1, 5, 15 min) at the "
        "end of the run (shared: other work ran alongside).",
        "",
        "| measure | value |",
        "|---|--:|",
        f"| index build, best / median of {args.builds} (in a worker thread when serving) | "
        f"{ms(min(builds))} / {ms(statistics.median(builds))} ms |",
        f"| resident memory held by one index | {held / 2**20:.1f} MiB |",
        f"| search (index, first 10 hits), p50 / p99 over {len(index_latency)} | "
        f"{ms(percentile(index_latency, 0.5))} / {ms(percentile(index_latency, 0.99))} ms |",
        f"| `search_tools` call (whole pipeline, SDK client in memory), p50 / p99 over {len(call_latency)} | "
        f"{ms(percentile(call_latency, 0.5))} / {ms(percentile(call_latency, 0.99))} ms |",
        f"| first `search_tools` call (waits for the index the start began building) | {ms(first_call)} ms |",
        f"| relevance: intended operation first / in the top 5 | {top1}/{total} / {top5}/{total} |",
    ]
    if misses:
        lines += ["", "Not first:", "", *[f"- {miss}" for miss in misses]]
    report = "\n".join(lines) + "\n"
    print(report)
    if args.write:
        write_section(RESULTS, report)


def write_section(path: Path, section: str) -> None:
    """Replace (or append) this bench's section of ``path``, keeping the rest."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if SECTION in text:
        before, _, rest = text.partition(SECTION)
        after = rest.split("\n## ", 1)
        text = before + section + ("\n## " + after[1] if len(after) > 1 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
