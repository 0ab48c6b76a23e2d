"""Catalog search on GitHub's REST API: index build time and memory, search latency, relevance.

The catalog is what a gateway serves for an OpenAPI upstream ``github`` on GitHub's REST
description (npm ``@octokit/openapi`` 23.0.2, ``generated/api.github.com.json``): the OpenAPI
provider's tools (:func:`mcplane.openapi.load_api`: one per operation, named after its
``operationId``, summary as title, summary and description, generated input and output schemas),
namespaced ``github__`` as the gateway lists them. About 1,200 tools.

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

    bash scripts/install-test-deps.sh    # installs the document under .tools/openapi (the default --spec)
    python bench/search.py --write

``--write`` replaces the ``## Catalog search`` section of ``bench/RESULTS.md`` (appended when absent);
``bench/run.py`` keeps that section when it rewrites the file (:func:`keep_section`).
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import anyio
import orjson
import psutil
from mcp import Client
from mcp_types import Tool

from mcplane.gateway import Gateway
from mcplane.gateway.config import SEPARATOR
from mcplane.gateway.search_index import ToolIndex
from mcplane.openapi import load_api

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / ".tools" / "openapi" / "node_modules" / "@octokit" / "openapi" / "generated" / "api.github.com.json"
RESULTS = ROOT / "bench" / "RESULTS.md"
SECTION = "## Catalog search"
PREFIX = "github" + SEPARATOR
"""The upstream's namespace, as the gateway prefixes its tools' names."""

# (query, the tool a person asking it wants: the operationId as the OpenAPI provider names it, "/" as "_")
RELEVANCE: list[tuple[str, str]] = [
    ("list repositories for a user", "repos_list-for-user"),
    ("create an issue", "issues_create"),
    ("merge a pull request", "pulls_merge"),
    ("list workflow runs for a repository", "actions_list-workflow-runs-for-repo"),
    ("star a repository", "activity_star-repo-for-authenticated-user"),
    ("create a gist", "gists_create"),
    ("get the authenticated user", "users_get-authenticated"),
    ("add labels to an issue", "issues_add-labels"),
    ("create a release", "repos_create-release"),
    ("delete branch protection", "repos_delete-branch-protection"),
    ("list commits", "repos_list-commits"),
    ("create a review comment on a pull request", "pulls_create-review-comment"),
    ("search issues and pull requests", "search_issues-and-pull-requests"),
    ("create a repository webhook", "repos_create-webhook"),
    ("list organization members", "orgs_list-members"),
    ("get repository content", "repos_get-content"),
    ("fork a repository", "repos_create-fork"),
    ("add a repository collaborator", "repos_add-collaborator"),
    ("download workflow run logs", "actions_download-workflow-run-logs"),
    ("create or update a repository secret", "actions_create-or-update-repo-secret"),
    ("list issue comments", "issues_list-comments"),
    ("lock an issue", "issues_lock"),
    ("get a commit", "repos_get-commit"),
    ("list pull request files", "pulls_list-files"),
    ("create a deployment", "repos_create-deployment"),
]


def catalog(spec: Path) -> list[Tool]:
    """The tools a gateway serves for an upstream ``github`` with ``openapi: {spec: ...}``: the
    OpenAPI provider's tools (:func:`mcplane.openapi.load_api`), named as the gateway lists them."""
    api = load_api({"spec": str(spec)})
    return [op.tool.model_copy(update={"name": PREFIX + name}) for name, op in api.operations.items()]


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


class FullCollections:
    """The garbage collector's full (generation 2) collections while in the block, and how long each took."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self._start = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] == 2:
            if phase == "start":
                self._start = time.perf_counter()
            else:
                self.pauses.append(time.perf_counter() - self._start)

    def __enter__(self) -> FullCollections:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)


async def bench_tools_call(
    spec: Path, queries: list[str], rounds: int
) -> tuple[list[float], list[float], float, float, FullCollections]:
    """``search_tools`` through a gateway with the upstream ``github`` (this document, never called)."""
    tree = {
        "upstreams": {"github": {"openapi": {"spec": str(spec), "base_url": "http://127.0.0.1:9"}}},
        "discovery": {"mode": "search"},
        "authorization": {"default": "allow", "tools": {PREFIX + "*": {"roles": []}}},
    }
    plane = Gateway.from_config(tree)
    latencies: list[float] = []
    single: list[float] = []
    sizes: list[int] = []
    async with Client(plane.sdk, mode="2026-07-28") as client:
        start = time.perf_counter()
        first = await client.call_tool("search_tools", {"query": "warm up"})  # waits for the index
        first_call = time.perf_counter() - start
        assert not first.is_error, first
        listed = sorted(tool.name for tool in (await client.list_tools()).tools)
        assert listed == ["call_tool", "search_tools"], listed
        with FullCollections() as collections:
            for _ in range(rounds):
                for query in queries:
                    start = time.perf_counter()
                    result = await client.call_tool("search_tools", {"query": query})
                    latencies.append(time.perf_counter() - start)
                    assert not result.is_error, result
                    sizes.append(len(orjson.dumps(result.structured_content)))
        for _ in range(rounds):
            for query in queries:
                start = time.perf_counter()
                result = await client.call_tool("search_tools", {"query": query, "limit": 1})
                single.append(time.perf_counter() - start)
                assert not result.is_error, result
    return latencies, single, first_call, statistics.mean(sizes), collections


def relevance(index: ToolIndex, known: set[str]) -> tuple[int, int, int, list[str]]:
    top1 = top5 = 0
    misses: list[str] = []
    pairs = [(query, PREFIX + name) for query, name in RELEVANCE]
    for query, expected in pairs:
        if expected not in known:
            misses.append(f"`{query}` → `{expected}`: not a tool of this document")
            continue
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
    parser.add_argument(
        "--spec",
        type=Path,
        default=SPEC if SPEC.exists() else None,
        required=not SPEC.exists(),
        help="api.github.com.json of @octokit/openapi (default: the one scripts/install-test-deps.sh installs)",
    )
    parser.add_argument("--builds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=20, help="passes over the query set")
    parser.add_argument("--write", action="store_true", help=f"write the section {SECTION!r} of bench/RESULTS.md")
    args = parser.parse_args()
    tools = catalog(args.spec)
    queries = [query for query, _ in RELEVANCE]
    builds, held, index = bench_build(tools, args.builds)
    index_latency = bench_index_search(index, queries, args.rounds)
    call_latency, single_latency, first_call, answer, collections = anyio.run(
        bench_tools_call, args.spec, queries, args.rounds
    )
    total, top1, top5, misses = relevance(index, {tool.name for tool in tools})
    text = sum(len(tool.description or "") for tool in tools)
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    lines = [
        SECTION,
        "",
        f"Generated by `python bench/search.py` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: "
        f"{len(tools)} tools from `{args.spec.name}` (npm `@octokit/openapi`; {text / 1e6:.1f} MB of "
        "descriptions): the OpenAPI provider's tools (`mcplane.openapi.load_api`) as a gateway lists them for "
        "an upstream `github` (`github__<operationId>`, `/` as `_`; summary as title, summary and description, "
        "generated input and output schemas); `search_tools` through that gateway in search mode. Machine: "
        f"{os.cpu_count()} CPUs, load average {load} (1, 5, 15 min) at the end of the run (shared: other work "
        "ran alongside).",
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
        f"| `search_tools` answer (10 tools with their schemas), mean JSON size (sent as structured content "
        f"and again as text) | {answer / 1024:.0f} KiB |",
        f"| full garbage collections during those calls, count / longest | "
        f"{len(collections.pauses)} / {ms(max(collections.pauses, default=0.0))} ms |",
        f"| `search_tools` call with `limit: 1`, p50 / p99 over {len(single_latency)} | "
        f"{ms(percentile(single_latency, 0.5))} / {ms(percentile(single_latency, 0.99))} ms |",
        f"| first `search_tools` call (waits for the index the start began building) | {ms(first_call)} ms |",
        f"| relevance: intended operation first / in the top 5 | {top1}/{total} / {top5}/{total} |",
    ]
    lines += [
        "",
        "A search answer carries each tool it found with its generated schemas (GitHub's output schemas are "
        "large): building and sending them, not the search, is most of a call's time (compare `limit: 1`). A "
        "full garbage collection runs over a heap that holds the whole catalog, and the call it lands on "
        "waits for it.",
    ]
    if misses:
        lines += ["", "Not first:", "", *[f"- {miss}" for miss in misses]]
    report = "\n".join(lines) + "\n"
    print(report)
    if args.write:
        write_section(RESULTS, report)


def keep_section(path: Path, text: str) -> str:
    """``text`` (a new bench/run.py report for ``path``) with the catalog search section ``path`` had, if any."""
    if not path.exists() or SECTION in text:
        return text
    old = path.read_text(encoding="utf-8")
    found = re.search(rf"{re.escape(SECTION)}\n.*?(?=\n## |\Z)", old, re.S)
    return text if found is None else text.rstrip("\n") + "\n\n" + found.group(0).rstrip("\n") + "\n"


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
