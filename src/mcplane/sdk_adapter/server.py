"""The official SDK's ``MCPServer`` with its call and list handlers routed through a Plane.

Calls (``tools/call``, ``resources/read``, ``prompts/get``) go through the plane's pipeline;
lists (``tools/list``, ``resources/list``, ``resources/templates/list``, ``prompts/list``) show a
principal only what the authorization layer would let it call. Its subscription bus is a
:class:`~mcplane.fanout.PlaneBus` (``subscriptions/listen`` events reach every replica), and
``requestState`` can be sealed with keys the replicas share (:func:`install_request_state_keys`).
"""

from __future__ import annotations

import base64
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, UnexpectedResourceError
from mcp.server.request_state import RequestStateBoundary, RequestStateSecurity
from mcp.server.subscriptions import ListenHandler
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    BlobResourceContents,
    CallToolRequestParams,
    CallToolResult,
    GetPromptRequestParams,
    GetPromptResult,
    InputRequiredResult,
    ListPromptsResult,
    ListResourcesResult,
    ListResourceTemplatesResult,
    ListToolsResult,
    PaginatedRequestParams,
    ReadResourceRequestParams,
    ReadResourceResult,
    SubscriptionsListenRequestParams,
    TextResourceContents,
)

from mcplane.auth.middleware import principal_of
from mcplane.auth.policy import AccessPolicy, Kind, visible
from mcplane.context import ANONYMOUS, Context
from mcplane.errors import InternalError, NotFound
from mcplane.fanout import PlaneBus
from mcplane.middleware.authorize import listing_client
from mcplane.pipeline import Call
from mcplane.sdk_adapter.mcpserver import lowlevel_server, subscription_bus
from mcplane.tasks import TaskListenHandler, TaskRuntime, current_scope
from mcplane.tasks.runtime import ToolHandler

if TYPE_CHECKING:
    from mcp.server.context import ServerRequestContext

    from mcplane.app import ListKind, Plane

__all__ = ["SDKServer", "install_request_state_keys", "install_task_listen", "sdk_lifespan"]

_Item = TypeVar("_Item")


def install_task_listen(sdk: MCPServer[Any], runtime: TaskRuntime) -> None:
    """Serve ``subscriptions/listen`` with the tasks extension's ``taskIds`` filter on top."""
    lowlevel = lowlevel_server(sdk)
    entry = lowlevel.get_request_handler("subscriptions/listen")
    if entry is not None and isinstance(entry.handler, ListenHandler):
        handler = TaskListenHandler(entry.handler, subscription_bus(sdk), runtime)
        lowlevel.add_request_handler("subscriptions/listen", SubscriptionsListenRequestParams, handler)


def install_request_state_keys(sdk: MCPServer[Any], keys: Sequence[bytes], *, ttl: float) -> None:
    """Seal ``requestState`` with ``keys`` (``keys[0]`` seals, all unseal) instead of a per-process key.

    Replicas sharing the keys (and the server name, the audience claim) accept each other's state,
    so a multi-round-trip request started on one completes on another. The key used is derived
    for this purpose from each secret, so a secret also used for session ids never seals both.
    """
    from mcplane.transports.sealing import REQUEST_STATE_PURPOSE, derive_key

    security = RequestStateSecurity(keys=[derive_key(key, REQUEST_STATE_PURPOSE) for key in keys], ttl=ttl)
    middleware = sdk.middleware
    for index, installed in enumerate(middleware):
        if isinstance(installed, RequestStateBoundary):
            middleware[index] = RequestStateBoundary(security, default_audience=sdk.name)
            return
    raise RuntimeError("the SDK server has no request-state boundary to configure")


def sdk_lifespan(plane: Plane) -> Callable[[MCPServer[Any]], AbstractAsyncContextManager[Any]]:
    @asynccontextmanager
    async def lifespan(_: MCPServer[Any]) -> AsyncGenerator[Any]:
        async with plane.lifespan() as opened:
            yield opened

    return lifespan


class SDKServer(MCPServer[Any]):
    """The SDK server with its call handlers routed through the plane's pipeline."""

    def __init__(self, plane: Plane, **kwargs: Any) -> None:
        self._plane = plane
        kwargs.setdefault("subscriptions", PlaneBus())
        super().__init__(**kwargs)

    @property
    def plane(self) -> Plane:
        """The plane whose pipeline this server's handlers run."""
        return self._plane

    @property
    def call_tool_handler(self) -> ToolHandler:
        """The ``tools/call`` handler (the tasks extension wraps it to run a call as a task)."""
        return self._handle_call_tool

    async def _handle_call_tool(
        self, ctx: ServerRequestContext[Any, Any], params: CallToolRequestParams
    ) -> CallToolResult | InputRequiredResult:
        plane = self._plane
        context = plane.make_context(ctx, params)
        name, arguments = params.name, params.arguments or {}
        if plane.catalog_view is not None:  # ``call_tool`` names the tool the pipeline then sees
            name, arguments = plane.catalog_view.resolve(name, arguments)
        policy = plane.policy_for(name)
        if current_scope.get() is not None and policy.timeout is None:
            policy = replace(policy, unbounded=True)  # it may become a task: bounded by the task TTL instead
        return await plane._chain(Call("tool", name, arguments, context, policy, plane.source_for(name)))

    def _visible(
        self, ctx: ServerRequestContext[Any, Any], kind: Kind, params: Any = None
    ) -> Callable[[str], bool] | None:
        """A name filter for list results, or ``None`` when no authorization layer is installed."""
        plane = self._plane
        authorizer = plane.pipeline.get("authorize")
        if authorizer is None:
            return None
        principal = principal_of(ctx) or ANONYMOUS
        policy = plane.config.authorization or AccessPolicy()
        client = listing_client(authorizer, lambda: plane.make_context(ctx, params))

        def allowed(name: str) -> bool:
            code = plane.policy_for(name) if kind == "tool" else None
            return visible(principal, kind, name, policy, code, client)

        return allowed

    def _with_providers(self, kind: ListKind, local: list[_Item], key: Callable[[_Item], str]) -> list[_Item]:
        """Local entries, then each provider's (in order) whose key no local or earlier entry has."""
        if not self._plane.providers:
            return local
        merged, seen = list(local), {key(item) for item in local}
        for provider in self._plane.providers:
            for item in provider.listed(kind):
                if key(item) not in seen:
                    seen.add(key(item))
                    merged.append(item)
        return merged

    def _tool_input_schema(self, name: str) -> dict[str, Any] | None:
        schema = super()._tool_input_schema(name)
        if schema is None:  # an upstream tool's schema: the SDK checks Mcp-Param headers against it
            for provider in self._plane.providers:
                if (source := provider.source(name)) is not None and source.json_schema is not None:
                    return dict(source.json_schema)
        return schema

    def _page(
        self, items: list[_Item], params: PaginatedRequestParams | None, kind: str
    ) -> tuple[list[_Item], str | None]:
        """One page of a list and the cursor of the next (``None``: the last page).

        Lists longer than ``limits.list_page_size`` are paginated, as the protocol allows, so a
        gateway in front of thousands of tools never answers one multi-megabyte list. The cursor
        is opaque to clients (the offset and the list's kind); a malformed one is ``-32602``.
        """
        size = self._plane.config.limits.list_page_size
        start = 0
        cursor = params.cursor if params is not None else None
        if cursor is not None:
            start = _cursor_offset(cursor, kind)
        if start == 0 and len(items) <= size:
            return items, None
        end = start + size
        return items[start:end], (_cursor(end, kind) if end < len(items) else None)

    def _listed(
        self,
        ctx: ServerRequestContext[Any, Any],
        params: PaginatedRequestParams | None,
        items: list[_Item],
        kinds: tuple[ListKind, Kind, str],
        key: Callable[[_Item], str],
    ) -> tuple[list[_Item], str | None]:
        """One list's page: local entries and the providers', filtered by authorization, paged.

        ``kinds`` are the list's kind (for providers), the authorization kind and the cursor kind.
        """
        listed, authorized, cursor = kinds
        items = self._with_providers(listed, items, key)
        if listed == "tool" and self._plane.catalog_view is not None:  # catalog search: what it shows
            items = self._plane.catalog_view.shown(items)
        if (allowed := self._visible(ctx, authorized, params)) is not None:
            items = [item for item in items if allowed(key(item))]
        return self._page(items, params, cursor)

    async def _handle_list_tools(
        self, ctx: ServerRequestContext[Any, Any], params: PaginatedRequestParams | None
    ) -> ListToolsResult:
        result = await super()._handle_list_tools(ctx, params)
        kinds = ("tool", "tool", "tool")
        result.tools, result.next_cursor = self._listed(ctx, params, result.tools, kinds, lambda item: item.name)
        return result

    async def _handle_list_resources(
        self, ctx: ServerRequestContext[Any, Any], params: PaginatedRequestParams | None
    ) -> ListResourcesResult:
        result = await super()._handle_list_resources(ctx, params)
        kinds = ("resource", "resource", "resource")
        result.resources, result.next_cursor = self._listed(
            ctx, params, result.resources, kinds, lambda item: str(item.uri)
        )
        return result

    async def _handle_list_resource_templates(
        self, ctx: ServerRequestContext[Any, Any], params: PaginatedRequestParams | None
    ) -> ListResourceTemplatesResult:
        result = await super()._handle_list_resource_templates(ctx, params)
        kinds = ("resource_template", "resource", "template")
        result.resource_templates, result.next_cursor = self._listed(
            ctx, params, result.resource_templates, kinds, lambda item: item.uri_template
        )
        return result

    async def _handle_list_prompts(
        self, ctx: ServerRequestContext[Any, Any], params: PaginatedRequestParams | None
    ) -> ListPromptsResult:
        result = await super()._handle_list_prompts(ctx, params)
        kinds = ("prompt", "prompt", "prompt")
        result.prompts, result.next_cursor = self._listed(ctx, params, result.prompts, kinds, lambda item: item.name)
        return result

    async def _handle_read_resource(
        self, ctx: ServerRequestContext[Any, Any], params: ReadResourceRequestParams
    ) -> ReadResourceResult | InputRequiredResult:
        plane = self._plane
        context = plane.make_context(ctx, params)
        return await plane._chain(Call("resource", str(params.uri), {}, context))

    async def _handle_get_prompt(
        self, ctx: ServerRequestContext[Any, Any], params: GetPromptRequestParams
    ) -> GetPromptResult | InputRequiredResult:
        plane = self._plane
        context = plane.make_context(ctx, params)
        return await plane._chain(Call("prompt", params.name, params.arguments or {}, context))

    async def _read_resource_result(self, uri: str, context: Context) -> ReadResourceResult | InputRequiredResult:
        try:
            results = await self.read_resource(uri, context)
        except ResourceError as err:
            if isinstance(err, UnexpectedResourceError):
                raise  # the errors slot logs it and answers internal_error
            found = not isinstance(err, ResourceNotFoundError)
            error = InternalError("error reading resource") if found else NotFound("resource not found")
            data = {**error.to_dict(context.correlation_id), "uri": uri}  # the error object, and the URI asked
            raise MCPError(code=INTERNAL_ERROR if found else INVALID_PARAMS, message=error.message, data=data) from None
        if isinstance(results, InputRequiredResult):
            return results
        contents: list[TextResourceContents | BlobResourceContents] = []
        for item in results:
            if isinstance(item.content, bytes):
                contents.append(
                    BlobResourceContents(
                        uri=uri,
                        blob=base64.b64encode(item.content).decode(),
                        mime_type=item.mime_type or "application/octet-stream",
                        _meta=item.meta,
                    )
                )
            else:
                contents.append(
                    TextResourceContents(
                        uri=uri, text=item.content, mime_type=item.mime_type or "text/plain", _meta=item.meta
                    )
                )
        return ReadResourceResult(contents=contents)


def _cursor(offset: int, kind: str) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{offset}".encode()).decode().rstrip("=")


def _cursor_offset(cursor: str, kind: str) -> int:
    """The offset a cursor of ours holds; anything else is ``-32602`` (as the protocol says)."""
    try:
        text = base64.urlsafe_b64decode(cursor[:64] + "=" * (-len(cursor[:64]) % 4)).decode()
        found_kind, offset = text.split(":", 1)
        if found_kind == kind and offset.isdigit() and len(offset) < 10:
            return int(offset)
    except (ValueError, UnicodeDecodeError):
        pass
    raise MCPError(code=INVALID_PARAMS, message="invalid cursor", data={"code": "invalid_arguments"})
