"""Catalog search ("progressive discovery"): ``discovery: {mode: search}`` in ``gateway.yaml``.

A gateway in front of a large catalog (a REST API of a thousand operations, many MCP upstreams)
does not hand an agent every tool. In search mode ``tools/list`` shows two tools, plus the ones
``discovery.always_list`` globs match:

* ``search_tools`` ``{query, limit?, namespace?}``: the tools whose name, title, description or
  parameters match ``query`` (BM25, :mod:`mcplane.gateway.search_index`), best first, each with
  its ``inputSchema`` (and ``outputSchema``, ``annotations``, ``title`` when it has them), in
  ``structuredContent`` (declared by its ``outputSchema``) and as text;
* ``call_tool`` ``{name, arguments?}``: calls the tool ``name`` with ``arguments``.

Every tool stays callable by its own name. The discovery tools shadow a tool of the same name
(an upstream exposed without a namespace).

**Authorization.** A search returns only tools the caller may see in ``tools/list`` (the same
rules, the listing client included), so nobody discovers what they may not call. ``search_tools``
itself is a tool: policy globs (roles, rate limits, audit) apply to it as to any other.

**call_tool is not a tool of its own.** A ``tools/call`` of ``call_tool`` whose arguments are
well formed is the call of the tool it names (:meth:`CatalogSearch.resolve`): the whole pipeline
(authorization, budget, rate limit, cache, audit, metrics, versions) sees that tool's name,
arguments and policy, once, as if it were called directly, and answers as a direct call would
(an unknown name: ``not_found``; a tool the caller may not call: ``forbidden``). Malformed
arguments are ``call_tool``'s own call, refused by the ``validate`` slot (``invalid_arguments``).

**The index follows the catalog.** It is built when the plane starts and rebuilt whenever the
catalog changes (:meth:`~mcplane.Plane.providers_changed`: an upstream's list changed, a reload,
the integrity guard's quarantine or approval), in a worker thread, one build at a time (changes
during a build make one more). Each search also compares the catalog with the one indexed (the
providers' lists by identity: the gateway replaces them on every change; local tools by value)
and waits for the build when they differ. Results are resolved against the catalog that was
indexed, so a quarantined or removed tool is never found.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any, cast

import anyio
import orjson
from mcp_types import CallToolResult, TextContent, Tool, ToolAnnotations
from pydantic import BaseModel, ConfigDict

from mcplane.auth.policy import AccessPolicy, visible
from mcplane.context import Context
from mcplane.errors import InvalidArguments, NotFound
from mcplane.gateway.search_index import MAX_QUERY_CHARS, ToolIndex
from mcplane.middleware.authorize import listing_client

if TYPE_CHECKING:
    from mcplane.app import ListKind, Plane
    from mcplane.gateway.config import DiscoveryConfig
    from mcplane.pipeline import Call, CallKind
    from mcplane.tool_policy import ToolPolicy, ToolSource

logger = logging.getLogger("mcplane.gateway.search")

__all__ = ["CALL_SCHEMA", "CALL_TOOL", "SEARCH_TOOL", "CatalogSearch", "FoundTool", "SearchResult", "search_schema"]

SEARCH_TOOL = "search_tools"
CALL_TOOL = "call_tool"
MAX_NAME_CHARS = 256
"""Longest tool name ``call_tool`` and the ``namespace`` filter accept."""

SEARCH_DESCRIPTION = (
    "Search this server's tools by what they do. Returns the best matching tools with their input "
    "schemas; call one with call_tool (or by its name). Use short keyword queries."
)
CALL_DESCRIPTION = "Call a tool found with search_tools: its name and its arguments (an object)."


class FoundTool(BaseModel):
    """One tool a search found, as ``tools/list`` describes it (absent fields are left out)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    title: str | None = None
    description: str | None = None
    inputSchema: dict[str, Any]  # the protocol's spelling
    outputSchema: dict[str, Any] | None = None
    annotations: dict[str, Any] | None = None


class SearchResult(BaseModel):
    """What ``search_tools`` answers: the matching tools, best first."""

    model_config = ConfigDict(extra="forbid")

    tools: list[FoundTool]


def search_schema(max_results: int) -> dict[str, Any]:
    """``search_tools``' input schema (its ``limit`` at most ``max_results``)."""
    return {
        "type": "object",
        "properties": {
            "query": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_QUERY_CHARS,
                "description": "What the tool should do, in a few keywords (e.g. 'list repository issues').",
            },
            "limit": {
                "type": "integer",
                "minimum": 1,
                "maximum": max_results,
                "description": f"The most tools to return (default and at most {max_results}).",
            },
            "namespace": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_NAME_CHARS,
                "description": "Only tools of this namespace (an upstream: the part of a name before '__').",
            },
        },
        "required": ["query"],
        "additionalProperties": False,
    }


CALL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": MAX_NAME_CHARS, "description": "The tool's name."},
        "arguments": {"type": "object", "description": "The tool's arguments, as its inputSchema describes them."},
    },
    "required": ["name"],
    "additionalProperties": False,
}


def found(tool: Tool) -> dict[str, Any]:
    """A tool's entry in a search result (a :class:`FoundTool`)."""
    entry: dict[str, Any] = {"name": tool.name, "inputSchema": dict(tool.input_schema)}
    if tool.title:
        entry["title"] = tool.title
    if tool.description:
        entry["description"] = tool.description
    if tool.output_schema is not None:
        entry["outputSchema"] = dict(tool.output_schema)
    if tool.annotations is not None:
        entry["annotations"] = tool.annotations.model_dump(by_alias=True, exclude_none=True)
    return entry


class _Indexed:
    """An index and the catalog it was built from."""

    def __init__(self, lists: tuple[Sequence[Any], ...], local: tuple[Any, ...], index: ToolIndex, tools: list[Tool]):
        self.lists = lists
        self.local = local
        self.index = index
        self.tools = {tool.name: tool for tool in tools}


class CatalogSearch:
    """The plane's :attr:`~mcplane.Plane.catalog_view` in search mode, and its two tools."""

    def __init__(self, plane: Plane, config: DiscoveryConfig) -> None:
        self.plane = plane
        self.config = config
        self.builds = 0
        """Indexes built so far (a plain counter)."""
        self._indexed: _Indexed | None = None
        self._lock = anyio.Lock()
        self._changed: anyio.Event | None = None

    def install(self) -> None:
        """Register ``search_tools`` and ``call_tool`` on the plane and show only them (and
        ``always_list``) in ``tools/list``. Call it before the plane starts."""
        plane = self.plane
        search = self

        async def search_tools(
            query: str, ctx: Context, limit: int | None = None, namespace: str | None = None
        ) -> Annotated[CallToolResult, SearchResult]:
            tools = await search.search(ctx, query, limit=limit, namespace=namespace)
            structured = {"tools": [found(tool) for tool in tools]}
            text = orjson.dumps(structured).decode()
            return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=structured)

        def call_tool(name: str, arguments: dict[str, Any] | None = None) -> str:
            # Reached only when ``resolve`` left the call alone: it names call_tool itself.
            raise InvalidArguments(
                "call_tool calls another tool, not itself",
                details=[{"field": "name", "message": "names call_tool", "type": "value_error"}],
            )

        plane.tool(
            SEARCH_TOOL,
            description=SEARCH_DESCRIPTION,
            input_schema=search_schema(self.config.max_results),
            annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False),
            structured_output=True,
        )(search_tools)
        call = plane.tool(CALL_TOOL, description=CALL_DESCRIPTION, input_schema=CALL_SCHEMA, structured_output=False)
        call(call_tool)
        plane.catalog_view = self
        plane.add_provider(_Indexer(self))  # serves nothing: runs the index builds while the plane runs

    @property
    def indexed(self) -> frozenset[str]:
        """The names of the tools the current index holds (empty before the first build)."""
        indexed = self._indexed
        return frozenset() if indexed is None else frozenset(indexed.tools)

    def catalog_changed(self) -> None:
        """Index the new catalog now, in the background (a search also checks before it runs)."""
        if self._changed is not None:
            self._changed.set()

    async def keep_current(self) -> None:
        """Rebuild the index whenever the catalog changes (and once at start), until cancelled."""
        changed = self._changed = anyio.Event()
        changed.set()
        try:
            while True:
                await changed.wait()
                changed = self._changed = anyio.Event()  # a change from now on: one more build
                try:
                    await self.current()
                except Exception:  # the next search builds it, or says why it cannot
                    logger.exception("the catalog search index could not be built")
        finally:
            self._changed = None

    # ----------------------------------------------------------------- the catalog view
    def shown(self, tools: list[Any]) -> list[Any]:
        globs = self.config.always_list
        return [
            tool
            for tool in tools
            if tool.name in (SEARCH_TOOL, CALL_TOOL) or any(fnmatch.fnmatchcase(tool.name, glob) for glob in globs)
        ]

    def resolve(self, name: str, arguments: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
        """A well-formed ``call_tool`` call is the call of the tool it names; anything else is left
        as it is (malformed arguments then fail ``call_tool``'s schema in the ``validate`` slot)."""
        if name != CALL_TOOL or not arguments.keys() <= {"name", "arguments"}:
            return name, arguments
        target = arguments.get("name")
        inner = arguments.get("arguments", {})
        if not isinstance(target, str) or not 1 <= len(target) <= MAX_NAME_CHARS or target == CALL_TOOL:
            return name, arguments
        if not isinstance(inner, dict):
            return name, arguments
        return target, cast("dict[str, Any]", inner)

    # ----------------------------------------------------------------- search
    async def search(
        self, context: Context, query: str, *, limit: int | None = None, namespace: str | None = None
    ) -> list[Tool]:
        """The tools matching ``query`` that the caller may see, best first (at most ``limit``)."""
        indexed = await self.current()
        limit = min(limit or self.config.max_results, self.config.max_results)
        prefix = None if namespace is None else namespace + "__"
        allowed = self._visible(context)
        results: list[Tool] = []
        for name, _ in indexed.index.search(query):
            if prefix is not None and not name.startswith(prefix):
                continue
            if not allowed(name):
                continue
            results.append(indexed.tools[name])
            if len(results) == limit:
                break
        return results

    def _visible(self, context: Context) -> Callable[[str], bool]:
        """Whether the caller may see a tool, by the rules ``tools/list`` is filtered with."""
        plane = self.plane
        authorizer = plane.pipeline.get("authorize")
        if authorizer is None:
            return lambda _: True
        principal = context.principal
        policy = plane.config.authorization or AccessPolicy()
        client = listing_client(authorizer, lambda: context)

        def allowed(name: str) -> bool:
            return visible(principal, "tool", name, policy, plane.policy_for(name), client)

        return allowed

    async def current(self) -> _Indexed:
        """The index of the catalog as it is now (rebuilt in a worker thread if it changed)."""
        lists, local = await self._catalog()
        indexed = self._indexed
        if indexed is not None and _same(indexed, lists, local):
            return indexed
        async with self._lock:
            lists, local = await self._catalog()
            indexed = self._indexed
            if indexed is not None and _same(indexed, lists, local):
                return indexed
            tools = _tools(lists, local)
            index = await anyio.to_thread.run_sync(ToolIndex.build, tools)
            self.builds += 1
            self._indexed = indexed = _Indexed(lists, local, index, tools)
            return indexed

    async def _catalog(self) -> tuple[tuple[Sequence[Any], ...], tuple[Any, ...]]:
        """The providers' tool lists (compared by identity) and the local tools (by value)."""
        plane = self.plane
        local = tuple(tool for tool in await plane.sdk.list_tools() if tool.name not in (SEARCH_TOOL, CALL_TOOL))
        return tuple(provider.listed("tool") for provider in plane.providers), local


class _Indexer:
    """A provider that serves nothing: its lifespan runs :meth:`CatalogSearch.keep_current`."""

    def __init__(self, search: CatalogSearch) -> None:
        self.search = search

    def owns(self, kind: CallKind, name: str) -> bool:
        return False

    def policy(self, tool: str) -> ToolPolicy | None:
        return None

    def source(self, tool: str) -> ToolSource | None:
        return None

    def listed(self, kind: ListKind) -> Sequence[Any]:
        return ()

    async def provide(self, call: Call) -> Any:
        raise NotFound(f"Unknown {call.kind}: {call.name}")  # never asked: it owns nothing

    @asynccontextmanager
    async def open(self, plane: Plane) -> AsyncGenerator[None]:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.search.keep_current)
            try:
                yield
            finally:
                tg.cancel_scope.cancel()


def _same(indexed: _Indexed, lists: tuple[Sequence[Any], ...], local: tuple[Any, ...]) -> bool:
    return (
        len(indexed.lists) == len(lists)
        and all(a is b for a, b in zip(indexed.lists, lists, strict=True))
        and indexed.local == local
    )


def _tools(lists: tuple[Sequence[Any], ...], local: tuple[Any, ...]) -> list[Tool]:
    """Every tool ``tools/list`` would list (local ones first, then each provider's not yet seen)."""
    tools: list[Tool] = list(local)
    seen = {tool.name for tool in tools} | {SEARCH_TOOL, CALL_TOOL}
    for listed in lists:
        for tool in listed:
            if tool.name not in seen:
                seen.add(tool.name)
                tools.append(tool)
    return tools
