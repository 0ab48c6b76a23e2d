"""The Plane: registry + pipeline + lifespan, served over stdio, Streamable HTTP and WebSocket.

Protocol work (JSON-RPC, both protocol eras, ``server/discover``, multi-round-trip requests,
subscriptions, caching hints) is the official SDK's; the Plane registers tools, resources and
prompts on an SDK ``MCPServer`` and routes every call through mcplane's pipeline.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, UnexpectedResourceError
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
    ReadResourceRequestParams,
    ReadResourceResult,
    SubscriptionsListenRequestParams,
    TextResourceContents,
    ToolAnnotations,
)

from mcplane.context import ANONYMOUS, Context
from mcplane.dependencies import Dependency, bind_injections, open_dependencies
from mcplane.errors import ConfigError, InvalidArguments
from mcplane.fastpath import FastPath
from mcplane.middleware.errors import ErrorsMiddleware
from mcplane.middleware.timeout import TimeoutMiddleware
from mcplane.pipeline import Call, Pipeline
from mcplane.policy import parse_duration
from mcplane.tasks import TaskListenHandler, TaskPolicy, TaskRuntime, TasksExtension, current_scope, task_policy

if TYPE_CHECKING:
    from mcp.server.context import ServerRequestContext
    from mcp.server.extension import Extension

__all__ = ["Plane"]

_F = TypeVar("_F", bound=Callable[..., Any])
Transport = Literal["stdio", "http", "ws"]


class Plane:
    """An MCP server whose every call passes through mcplane's production pipeline.

    ``Plane("billing")`` then ``@plane.tool()``, ``@plane.resource(uri)``, ``@plane.prompt()``
    and ``plane.run()`` (stdio) or ``plane.run(transport="http", port=8000)``.

    ``tasks`` installs the ``io.modelcontextprotocol/tasks`` extension (see :mod:`mcplane.tasks`):
    ``True`` (default) with an in-memory runtime, a :class:`~mcplane.tasks.TaskRuntime` to
    configure the store, TTL and poll interval, ``False`` to leave it out.
    """

    def __init__(
        self,
        name: str,
        *,
        version: str | None = None,
        instructions: str | None = None,
        default_timeout: float | str | None = 5.0,
        extensions: Sequence[Extension] | None = None,
        lifespan: Callable[[Plane], AbstractAsyncContextManager[Any]] | None = None,
        tasks: bool | TaskRuntime = True,
    ) -> None:
        from mcplane._version import __version__

        self.name = name
        self.pipeline = Pipeline()
        self.pipeline.set("errors", ErrorsMiddleware())
        timeout = None if default_timeout is None else parse_duration(default_timeout, field="default_timeout")
        self.pipeline.set("timeout", TimeoutMiddleware(timeout))
        self._policies: dict[str, dict[str, Any]] = {}
        self._dependencies: dict[str, Dependency] = {}
        self._open: dict[str, Any] = {}
        self._users = 0
        self._lifespan_lock = anyio.Lock()
        self._user_lifespan = lifespan
        self._user_lifespan_value: Any = None
        self._composed: tuple[tuple[str, Any], ...] = ()
        self._composed_chain = self._provide
        self.tasks: TaskRuntime | None = tasks if isinstance(tasks, TaskRuntime) else TaskRuntime() if tasks else None
        installed = list(extensions or ())
        if self.tasks is not None:  # innermost interceptor: it re-invokes the handler when a task resumes
            installed.append(TasksExtension(self.tasks, self._task_policy))
        self.sdk = _SDKServer(
            self,
            name=name,
            version=version or __version__,
            instructions=instructions,
            extensions=installed,
            lifespan=_sdk_lifespan(self),
            log_level="WARNING",
        )
        if self.tasks is not None:
            self.tasks.bind(self.sdk._handle_call_tool)
            _install_task_listen(self.sdk, self.tasks)
        self.fast = FastPath(self)
        """The hot path for plain ``tools/call`` requests (see :mod:`mcplane.fastpath`)."""

    # ----------------------------------------------------------------- registration
    def tool(
        self,
        name: str | None = None,
        *,
        title: str | None = None,
        description: str | None = None,
        annotations: ToolAnnotations | None = None,
        read_only: bool | None = None,
        idempotent: bool | None = None,
        destructive: bool | None = None,
        open_world: bool | None = None,
        timeout: float | str | None = None,
        meta: dict[str, Any] | None = None,
        structured_output: bool | None = None,
        input_schema: Mapping[str, Any] | None = None,
        task: bool | Literal["optional", "required", "forbidden"] | None = None,
        task_after: float | str | None = 0,
    ) -> Callable[[_F], _F]:
        """Register a function as a tool. Typed parameters become the input schema.

        ``input_schema`` publishes a hand-written JSON Schema (2020-12 keywords such as ``$defs``,
        ``allOf`` or ``if``/``then`` survive verbatim) in place of the derived one; the function's
        typed parameters still validate the arguments.

        ``task`` makes calls able to run as tasks (:mod:`mcplane.tasks`): ``True`` or
        ``"optional"`` for clients that declared the tasks extension, ``"required"`` to refuse
        the others with ``-32021``. ``task_after`` is how long such a call may run before it
        becomes a task: ``0`` (default) at once, a duration to answer directly when the call
        is done sooner, ``None`` only when the tool calls ``await ctx.start_task()``. A call
        that may become a task is bounded by ``timeout`` when given and by the task TTL
        otherwise, not by the plane's default timeout.
        """
        if callable(name):
            raise TypeError("use @plane.tool() with parentheses")
        hints = {
            "read_only_hint": read_only,
            "idempotent_hint": idempotent,
            "destructive_hint": destructive,
            "open_world_hint": open_world,
        }
        if any(v is not None for v in hints.values()):
            base = annotations.model_dump() if annotations else {}
            base.update({k: v for k, v in hints.items() if v is not None})
            annotations = ToolAnnotations(**base)

        def decorator(fn: _F) -> _F:
            tool_name = name or fn.__name__
            policy: dict[str, Any] = {}
            if timeout is not None:
                policy["timeout"] = parse_duration(timeout, field=f"tool {tool_name!r} timeout")
            if annotations is not None:
                policy["annotations"] = annotations
            if (task_mode := task_policy(task, task_after, tool=tool_name)) is not None:
                if self.tasks is None:
                    raise ConfigError(f"tool {tool_name!r} uses tasks but the plane was created with tasks=False")
                policy["task"] = task_mode
            self._policies[tool_name] = policy
            self.sdk.add_tool(
                bind_injections(fn, self._resolve_dependency),
                name=tool_name,
                title=title,
                description=description,
                annotations=annotations,
                meta=meta,
                structured_output=structured_output,
            )
            self.fast.forget(tool_name)
            if input_schema is not None:
                policy["input_schema"] = True
                registered = self.sdk._tool_manager.get_tool(tool_name)
                assert registered is not None
                registered.parameters = dict(input_schema)
            return fn

        return decorator

    def resource(self, uri: str, **kwargs: Any) -> Callable[[_F], _F]:
        """Register a function as a resource (``"users://{id}"`` makes it a template)."""
        register = self.sdk.resource(uri, **kwargs)

        def decorator(fn: _F) -> _F:
            register(bind_injections(fn, self._resolve_dependency))
            return fn

        return decorator

    def prompt(self, name: str | None = None, **kwargs: Any) -> Callable[[_F], _F]:
        """Register a function as a prompt template."""
        if callable(name):
            raise TypeError("use @plane.prompt() with parentheses")

        def decorator(fn: _F) -> _F:
            self.sdk.prompt(name, **kwargs)(bind_injections(fn, self._resolve_dependency))
            return fn

        return decorator

    def completion(self) -> Callable[[_F], _F]:
        """Register the completion handler (``completion/complete``)."""
        return self.sdk.completion()

    def request_handler(self, method: str, params_type: type[Any]) -> Callable[[_F], _F]:
        """Serve a JSON-RPC request method that is not a tool, resource or prompt call.

        For protocol housekeeping the SDK leaves to the application, such as the 2025-11-25
        era's ``logging/setLevel`` and ``resources/subscribe``/``unsubscribe``, or a custom
        method. ``async handler(ctx, params)`` gets the SDK request context and ``params``
        validated as ``params_type`` (a ``RequestParams`` subclass) and returns a result model or
        dict. It replaces the SDK's handler for ``method``, if any, and runs outside the
        pipeline: no timeout, authorization or audit applies.
        """

        def decorator(handler: _F) -> _F:
            self.sdk._lowlevel_server.add_request_handler(method, params_type, handler)
            return handler

        return decorator

    def dependency(self, fn: _F) -> _F:
        """Register a lifespan dependency: opened at start, closed at shutdown, injected with ``Inject``."""
        dep = Dependency(fn.__name__, fn)
        if dep.name in self._dependencies:
            raise ValueError(f"a dependency named {dep.name!r} is already registered")
        self._dependencies[dep.name] = dep
        fn.__mcplane_dependency__ = dep  # type: ignore[attr-defined]
        return fn

    def policy_for(self, tool: str) -> Mapping[str, Any]:
        return self._policies.get(tool, {})

    def _task_policy(self, tool: str) -> TaskPolicy | None:
        return self._policies.get(tool, {}).get("task")

    # ----------------------------------------------------------------- lifespan
    @asynccontextmanager
    async def lifespan(self) -> AsyncGenerator[Mapping[str, Any]]:
        """Open dependencies (and the user lifespan) once; re-entrant, closed by the last user.

        The first user also runs the task runtime (its task group lives in that user's frame),
        so detached tasks are cancelled when it leaves, before any dependency closes.
        """
        async with self._lifespan_lock:
            self._users += 1
            first = self._users == 1
            if first:
                try:
                    self._stack_cm = _open_all(self)
                    self._open = await self._stack_cm.__aenter__()
                except BaseException:
                    self._users -= 1
                    raise
        try:
            if first and self.tasks is not None:
                async with self.tasks.running():
                    yield self._open
            else:
                yield self._open
        finally:
            with anyio.CancelScope(shield=True):
                async with self._lifespan_lock:
                    self._users -= 1
                    if self._users == 0:
                        cm, self._open = self._stack_cm, {}
                        await cm.__aexit__(None, None, None)

    def _resolve_dependency(self, name: str) -> Any:
        try:
            return self._open[name]
        except KeyError:
            raise LookupError(f"dependency {name!r} is not open (is the plane running?)") from None

    # ----------------------------------------------------------------- calls
    def make_context(
        self,
        request_context: ServerRequestContext[Any, Any] | None,
        params: Any,
        *,
        scope: Mapping[str, Any] | None = None,
        meta: Mapping[str, Any] | None = None,
        session_id: str | None = None,
    ) -> Context:
        return Context(
            request_context=request_context,
            mcp_server=self.sdk,
            input_params=params,
            subscriptions=self.sdk._subscriptions,
            principal=ANONYMOUS,
            correlation_id=secrets.token_hex(8),
            dependencies=self._open,
            scope=scope,
            meta=meta,
            session_id=session_id,
        )

    async def _chain(self, call: Call) -> Any:
        """Run ``call`` through the pipeline as it is now: a slot set after construction takes effect."""
        slots = tuple(self.pipeline._slots.items())
        if slots != self._composed:
            self._composed, self._composed_chain = slots, self.pipeline.compose(self._provide)
        return await self._composed_chain(call)

    async def dispatch(self, call: Call) -> Any:
        """Run one call through the whole pipeline."""
        return await self._chain(call)

    async def _provide(self, call: Call) -> Any:
        if call.kind == "tool":
            if self.sdk._tool_manager.get_tool(call.name) is None:
                raise MCPError(code=INVALID_PARAMS, message=f"Unknown tool: {call.name}", data={"code": "not_found"})
            return await self.sdk.call_tool(call.name, dict(call.arguments), call.context)
        if call.kind == "resource":
            return await self.sdk._read_resource_result(call.name, call.context)
        prompt = self.sdk._prompt_manager.get_prompt(call.name)
        if prompt is None:
            raise MCPError(code=INVALID_PARAMS, message=f"Unknown prompt: {call.name}", data={"code": "not_found"})
        missing = [arg.name for arg in prompt.arguments or () if arg.required and arg.name not in call.arguments]
        if missing:
            details = [{"field": name, "message": "Field required", "type": "missing"} for name in missing]
            raise InvalidArguments("missing required prompt arguments", details=details)
        return await self.sdk.get_prompt(call.name, dict(call.arguments) or None, call.context)

    # ----------------------------------------------------------------- serving
    def http_app(self, **options: Any) -> Any:
        """The ASGI app serving ``/mcp`` (Streamable HTTP and WebSocket), ``/health`` and ``/ready``."""
        from mcplane.transports.http import HTTPApp, HTTPOptions

        return HTTPApp(self, HTTPOptions(**options))

    def run(self, transport: Transport = "stdio", *, host: str = "127.0.0.1", port: int = 8000, **options: Any) -> None:
        """Serve until interrupted: ``stdio`` (default), ``http`` or ``ws`` (same ASGI app)."""
        from mcplane.transports.serve import run

        run(self, transport, host=host, port=port, **options)


@asynccontextmanager
async def _open_all(plane: Plane) -> AsyncGenerator[dict[str, Any]]:
    async with open_dependencies(plane._dependencies) as opened:
        if plane._user_lifespan is not None:
            async with plane._user_lifespan(plane) as value:
                plane._user_lifespan_value = value
                yield opened
        else:
            yield opened


def _install_task_listen(sdk: MCPServer[Any], runtime: TaskRuntime) -> None:
    """Serve ``subscriptions/listen`` with the tasks extension's ``taskIds`` filter on top."""
    lowlevel = sdk._lowlevel_server
    entry = lowlevel.get_request_handler("subscriptions/listen")
    if entry is not None and isinstance(entry.handler, ListenHandler):
        handler = TaskListenHandler(entry.handler, sdk._subscriptions, runtime)
        lowlevel.add_request_handler("subscriptions/listen", SubscriptionsListenRequestParams, handler)


def _sdk_lifespan(plane: Plane) -> Callable[[MCPServer[Any]], AbstractAsyncContextManager[Any]]:
    @asynccontextmanager
    async def lifespan(_: MCPServer[Any]) -> AsyncGenerator[Any]:
        async with plane.lifespan() as opened:
            yield opened

    return lifespan


class _SDKServer(MCPServer[Any]):
    """The SDK server with its call handlers routed through the plane's pipeline."""

    def __init__(self, plane: Plane, **kwargs: Any) -> None:
        self._plane = plane
        super().__init__(**kwargs)

    async def _handle_call_tool(
        self, ctx: ServerRequestContext[Any, Any], params: CallToolRequestParams
    ) -> CallToolResult | InputRequiredResult:
        plane = self._plane
        context = plane.make_context(ctx, params)
        arguments = params.arguments or {}
        policy = plane.policy_for(params.name)
        if current_scope.get() is not None and "timeout" not in policy:
            policy = {**policy, "timeout": None}  # it may become a task: bounded by the task TTL instead
        return await plane._chain(Call("tool", params.name, arguments, context, policy))

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
            code = INVALID_PARAMS if isinstance(err, ResourceNotFoundError) else INTERNAL_ERROR
            message = "resource not found" if isinstance(err, ResourceNotFoundError) else "error reading resource"
            if isinstance(err, UnexpectedResourceError):
                raise  # the errors slot logs it and answers internal_error
            raise MCPError(code=code, message=message, data={"uri": uri}) from None
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
