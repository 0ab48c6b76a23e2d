"""The Plane: registry + pipeline + lifespan, served over stdio, Streamable HTTP and WebSocket.

Protocol work (JSON-RPC, both protocol eras, ``server/discover``, multi-round-trip requests,
subscriptions, caching hints) is the official SDK's; the Plane registers tools, resources and
prompts on an SDK ``MCPServer`` and routes every call through mcplane's pipeline.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

import anyio
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INVALID_PARAMS,
    ToolAnnotations,
)
from pydantic import ValidationError

from mcplane.config import PlaneConfig, ToolPolicySection, merge_policy
from mcplane.context import ANONYMOUS, Context, Principal, new_correlation_id
from mcplane.dependencies import Dependency, bind_injections, open_dependencies
from mcplane.errors import ConfigError, InvalidArguments, NotFound
from mcplane.fastpath import FastPath
from mcplane.middleware.drain import DrainGate
from mcplane.middleware.timeout import TimeoutMiddleware
from mcplane.middleware.validate import ValidateMiddleware
from mcplane.pipeline import Call, CallKind, Pipeline
from mcplane.policy import parse_duration
from mcplane.sdk_adapter.mcpserver import local_prompt, local_resource, local_tool, lowlevel_server, subscription_bus
from mcplane.sdk_adapter.server import SDKServer, install_task_listen, sdk_lifespan
from mcplane.sdk_adapter.tools import LocalTools
from mcplane.stack import Core, build_pipeline
from mcplane.tasks import TaskPolicy, TaskRuntime, TasksExtension, task_policy
from mcplane.tool_policy import EMPTY_POLICY, EMPTY_SOURCE, ToolPolicy, ToolSource

if TYPE_CHECKING:
    from mcp.server.context import ServerRequestContext
    from mcp.server.extension import Extension

    from mcplane.fanout import ListChanged

__all__ = ["CatalogView", "Plane", "Provider"]

_F = TypeVar("_F", bound=Callable[..., Any])
Transport = Literal["stdio", "http", "ws"]
ListKind = Literal["tool", "resource", "resource_template", "prompt"]


class Provider(Protocol):
    """A source of tools, resources and prompts that are not local functions (gateway upstreams).

    The plane consults its providers, in the order added, for names it has no local definition
    of; their calls run through the same pipeline. See :class:`mcplane.gateway.UpstreamProvider`.
    A provider whose tools change while serving calls :meth:`Plane.providers_changed`: the plane
    keeps the policies and sources it found until then.
    """

    def owns(self, kind: CallKind, name: str) -> bool:
        """Whether the provider serves ``name`` (a tool or prompt name, or a resource URI)."""
        ...

    def policy(self, tool: str) -> ToolPolicy | None:
        """The tool's code-level policy (e.g. its upstream's ``timeout``), if it serves it."""
        ...

    def source(self, tool: str) -> ToolSource | None:
        """What the tool is (its schema, annotations, upstream), if it serves it."""
        ...

    def listed(self, kind: ListKind) -> Sequence[Any]:
        """Entries for ``tools/list`` (``Tool``), ``resources/list``, ``resources/templates/list``, ``prompts/list``."""
        ...

    async def provide(self, call: Call) -> Any:
        """Serve one call (it has passed every pipeline layer)."""
        ...

    def open(self, plane: Plane) -> AbstractAsyncContextManager[None]:
        """Opened with the plane's lifespan (after its dependencies), closed before them."""
        ...


class CatalogView(Protocol):
    """What ``tools/list`` shows and which ``tools/call`` names another tool (catalog search,
    :mod:`mcplane.gateway.search`, sets one on a plane as :attr:`Plane.catalog_view`)."""

    def shown(self, tools: list[Any]) -> list[Any]:
        """The tools ``tools/list`` shows, of every tool it would list (before authorization)."""
        ...

    def resolve(self, name: str, arguments: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
        """The tool a ``tools/call`` of ``name`` calls, and its arguments (unchanged: ``name``'s own)."""
        ...

    def catalog_changed(self) -> None:
        """A provider's catalog changed (called from the event loop's thread)."""
        ...


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
        config: PlaneConfig | None = None,
    ) -> None:
        from mcplane._version import __version__

        self.name = name
        timeout = None if default_timeout is None else parse_duration(default_timeout, field="default_timeout")
        self._core = Core(
            timeout=TimeoutMiddleware(timeout),
            validate=ValidateMiddleware(local_validator=self._argument_validator),
        )
        self.drain: DrainGate = self._core.drain
        """The ``drain`` slot's gate; a served plane's :class:`~mcplane.observability.Lifecycle` binds it."""
        self.config = PlaneConfig()
        self.layers = build_pipeline(self.config, None, self._core)
        """What the config built: the frozen pipeline (rebuilt at each start), authenticator, checks."""
        self.pipeline = Pipeline()
        """The application's own middleware by slot (``plane.pipeline.set("audit", mw)``), served over
        the built pipeline: a slot filled here wins over the config's. ``get`` reads through to it."""
        self.pipeline.serve_over(self.layers.pipeline)
        self._policies: dict[str, ToolPolicy] = {}
        self._sources: dict[str, ToolSource] = {}
        self._provided: dict[str, ToolSource] = {}  # providers' tool sources found, until a catalog changes
        self._merged: dict[str, ToolPolicy] = {}
        self._dependencies: dict[str, Dependency] = {}
        self._open: dict[str, Any] = {}
        self._users = 0
        self._lifespan_lock = anyio.Lock()
        self._user_lifespan = lifespan
        self._user_lifespan_value: Any = None
        self._composed_revision = -1
        self._composed_chain = self._provide
        self.providers: list[Provider] = []
        self.catalog_view: CatalogView | None = None
        """What ``tools/list`` shows and which calls name another tool (``None``: every tool, by its name)."""
        self.tasks: TaskRuntime | None = tasks if isinstance(tasks, TaskRuntime) else TaskRuntime() if tasks else None
        installed = list(extensions or ())
        if self.tasks is not None:  # innermost interceptor: it re-invokes the handler when a task resumes
            installed.append(TasksExtension(self.tasks, self._task_policy))
        self.sdk = SDKServer(
            self,
            name=name,
            version=version or __version__,
            instructions=instructions,
            extensions=installed,
            lifespan=sdk_lifespan(self),
            log_level="WARNING",
        )
        self._tools = LocalTools(self.sdk)
        """Runs local tools as ``sdk.call_tool`` does, minus its per-call lookups (:mod:`mcplane.sdk_adapter.tools`)."""
        if self.tasks is not None:
            self.tasks.bind(self.sdk.call_tool_handler)
            install_task_listen(self.sdk, self.tasks)
        self.fast = FastPath(self)
        """The hot path for plain ``tools/call`` requests (see :mod:`mcplane.fastpath`)."""
        if config is not None:
            self.configure(config)

    def configure(self, config: PlaneConfig) -> None:
        """Apply a config (``mcplane.yaml``): its per-tool policy overrides the decorators'.

        Layers are built from it when the plane starts; configuring a running plane is refused.
        """
        if self._users:
            raise ConfigError("configure the plane before it starts")
        self.config = config
        self._merged.clear()
        self._core.configure(config)
        if config.server.name:
            self.name = lowlevel_server(self.sdk).name = config.server.name
        if config.sessions.keys:  # replicas sharing the keys continue each other's multi-round-trip requests
            from mcplane.sdk_adapter.server import install_request_state_keys

            keys = [key.get().encode() for key in config.sessions.keys]
            install_request_state_keys(self.sdk, keys, ttl=config.sessions.request_state_ttl)
        if config.secrets is not None:
            from mcplane.secrets import redact_all_logs

            redact_all_logs(config.secrets)

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
        rate_limit: str | list[str] | None = None,
        rate_limit_scope: Literal["principal", "global", "both"] | None = None,
        cache_ttl: float | str | None = None,
        cache_scope: Literal["private", "public"] | None = None,
        roles: list[str] | None = None,
        scopes: list[str] | None = None,
        cost: int | None = None,
        retryable: bool | None = None,
        meta: dict[str, Any] | None = None,
        structured_output: bool | None = None,
        input_schema: Mapping[str, Any] | None = None,
        task: bool | Literal["optional", "required", "forbidden"] | None = None,
        task_after: float | str | None = 0,
    ) -> Callable[[_F], _F]:
        """Register a function as a tool. Typed parameters become the input schema.

        Policy keywords (each overridable per tool glob in ``mcplane.yaml``): ``timeout``
        (``"2s"``), ``rate_limit`` (``"100/minute"`` or a list), ``rate_limit_scope``,
        ``cache_ttl`` (``"5m"``), ``cache_scope`` (``"private"`` unless the result is the same
        for everyone), ``roles``/``scopes`` (who may call it), ``cost`` (budget units per call),
        ``retryable`` (callers may retry it although it is not read-only or idempotent).

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
            declared: dict[str, Any] = {
                "timeout": timeout,
                "rate_limit": rate_limit,
                "rate_limit_scope": rate_limit_scope,
                "cache_ttl": cache_ttl,
                "cache_scope": cache_scope,
                "roles": roles,
                "scopes": scopes,
                "cost": cost,
                "retryable": retryable,
            }
            try:
                section = ToolPolicySection.model_validate({k: v for k, v in declared.items() if v is not None})
            except ValidationError as exc:
                first = exc.errors(include_url=False)[0]
                where = ".".join(str(part) for part in first["loc"])
                message = str(first["msg"]).removeprefix("Value error, ")
                raise ConfigError(f"tool {tool_name!r} {where}: {message}") from None
            policy = section.to_policy()
            _check_policy(tool_name, policy)
            if (task_mode := task_policy(task, task_after, tool=tool_name)) is not None:
                if self.tasks is None:
                    raise ConfigError(f"tool {tool_name!r} uses tasks but the plane was created with tasks=False")
                policy = replace(policy, task=task_mode)
            self._policies[tool_name] = policy
            self._sources[tool_name] = ToolSource(
                json_schema=None if input_schema is None else dict(input_schema),
                hand_written_schema=input_schema is not None,
                annotations=annotations,
            )
            self._merged.pop(tool_name, None)
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
                registered = local_tool(self.sdk, tool_name)
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
            lowlevel_server(self.sdk).add_request_handler(method, params_type, handler)
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

    def add_provider(self, provider: Provider) -> None:
        """Serve a provider's tools, resources and prompts (those without a local definition)."""
        if self._users:
            raise ConfigError("add providers before the plane starts")
        self.providers.append(provider)
        self._merged.clear()
        self._provided.clear()

    def providers_changed(self) -> None:
        """A provider's catalog changed: forget merged policies and the sources found (they include the provider's)."""
        self._merged.clear()
        self._provided.clear()
        if self.catalog_view is not None:
            self.catalog_view.catalog_changed()

    def policy_for(self, tool: str) -> ToolPolicy:
        """The tool's policy: the decorator's (or its provider's), overridden by the config file's globs."""
        merged = self._merged.get(tool)
        if merged is None:
            code = self._policies.get(tool)
            if code is None:
                code = next(
                    (p for provider in self.providers if (p := provider.policy(tool)) is not None), EMPTY_POLICY
                )
            merged = self._merged[tool] = merge_policy(code, self.config, tool)
        return merged

    def code_policy(self, tool: str) -> ToolPolicy:
        """The policy the decorator declared, before the config file."""
        return self._policies.get(tool, EMPTY_POLICY)

    def source_for(self, tool: str) -> ToolSource:
        """What the tool is: the decorator's schema and annotations, or its provider's."""
        source = self._sources.get(tool)
        if source is None:
            source = self._provided.get(tool)
            if source is None:
                source = next(
                    (s for provider in self.providers if (s := provider.source(tool)) is not None), EMPTY_SOURCE
                )
                if source is not EMPTY_SOURCE:  # a name no provider serves is asked again (it may come)
                    self._provided[tool] = source
        return source

    @property
    def default_timeout(self) -> float | None:
        """The timeout of a call no policy bounds (the ``timeout`` slot's)."""
        return self._core.timeout.default_timeout

    @property
    def started(self) -> bool:
        """Whether the plane's lifespan is open (its pipeline is built for its config and tools)."""
        return self._users > 0

    async def readiness(self) -> dict[str, tuple[bool, str]]:
        """Each configured backend's health: ``{"redis": (True, "ok"), "audit": (False, "...")}``."""
        return {name: await check() for name, check in self.layers.health_checks.items()}

    def _task_policy(self, tool: str) -> TaskPolicy | None:
        return self._policies.get(tool, EMPTY_POLICY).task

    # ----------------------------------------------------------------- lifespan
    @asynccontextmanager
    async def lifespan(self) -> AsyncGenerator[Mapping[str, Any]]:
        """Open dependencies (and the user lifespan) once; re-entrant, closed by the last user.

        The first user also runs the task runtime and the providers (their task groups live in
        that user's frame), so detached tasks are cancelled and upstream connections closed when
        it leaves, before any dependency closes.
        """
        async with self._lifespan_lock:
            self._users += 1
            first = self._users == 1
            if first:
                try:
                    policies = {name: self.policy_for(name) for name in self._policies}
                    if self.providers:  # provider tools are not known yet: the file's globs say what they need
                        policies.update({f"glob:{glob}": p.to_policy() for glob, p in self.config.tools.items()})
                    self.layers = build_pipeline(self.config, policies, self._core)
                    self.pipeline.serve_over(self.layers.pipeline)
                    self._stack_cm = _open_all(self)
                    self._open = await self._stack_cm.__aenter__()
                except BaseException:
                    self._users -= 1
                    await self.layers.aclose()
                    raise
        try:
            if first and (self.tasks is not None or self.providers):
                async with AsyncExitStack() as running:  # task groups: entered and left in this frame
                    for provider in self.providers:
                        await running.enter_async_context(provider.open(self))
                    if self.tasks is not None:
                        await running.enter_async_context(self.tasks.running())
                    yield self._open
            else:
                yield self._open
        finally:
            with anyio.CancelScope(shield=True):
                async with self._lifespan_lock:
                    self._users -= 1
                    if self._users == 0:
                        cm, self._open = self._stack_cm, {}
                        try:
                            await cm.__aexit__(None, None, None)
                        finally:
                            await self.layers.aclose()

    # ----------------------------------------------------------------- notifications
    async def notify_list_changed(self, kind: ListChanged) -> None:
        """Tell every client that the ``"tools"``, ``"prompts"`` or ``"resources"`` list changed.

        Reaches ``subscriptions/listen`` streams (2026-07-28) and the GET streams of 2025-11-25
        sessions, on this replica and, with ``redis_url`` configured, on every other one.
        """
        from mcplane.fanout import PlaneBus, list_changed_event

        bus = subscription_bus(self.sdk)
        event = list_changed_event(kind)
        await (bus.announce(event) if isinstance(bus, PlaneBus) else bus.publish(event))

    async def notify_resource_updated(self, uri: str) -> None:
        """Tell ``subscriptions/listen`` streams that asked for ``uri`` (on every replica) that it changed."""
        from mcp.server.subscriptions import ResourceUpdated

        await subscription_bus(self.sdk).publish(ResourceUpdated(uri=uri))

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
        principal: Principal = ANONYMOUS,
    ) -> Context:
        return Context.for_call(
            request_context=request_context,
            mcp_server=self.sdk,
            input_params=params,
            subscriptions=subscription_bus(self.sdk),
            principal=principal,
            correlation_id=new_correlation_id(),
            dependencies=self._open or {},
            scope=scope,
            meta=meta,
            session_id=session_id,
        )

    async def _chain(self, call: Call) -> Any:
        """Run ``call`` through the pipeline as it is now: a slot set after construction takes effect."""
        pipeline = self.pipeline
        if pipeline.revision != self._composed_revision:
            self._composed_revision, self._composed_chain = pipeline.revision, pipeline.compose(self._provide)
        return await self._composed_chain(call)

    async def dispatch(self, call: Call) -> Any:
        """Run one call through the whole pipeline."""
        return await self._chain(call)

    def _argument_validator(self, name: str) -> Callable[[dict[str, Any]], Any] | None:
        """How the SDK validates a local tool's arguments (``None``: no such local tool)."""
        tool = local_tool(self.sdk, name)
        return None if tool is None else tool.fn_metadata.validate_arguments

    def _not_found(self, call: Call, what: str) -> MCPError:
        error = NotFound(f"Unknown {what}: {call.name}")
        return MCPError(code=INVALID_PARAMS, message=error.message, data=error.to_dict(call.context.correlation_id))

    def _local(self, kind: CallKind, name: str) -> bool:
        if kind == "tool":
            return local_tool(self.sdk, name) is not None
        if kind == "prompt":
            return local_prompt(self.sdk, name) is not None
        return local_resource(self.sdk, name) is not None  # a traversal attempt is not ours to serve

    async def _provide(self, call: Call) -> Any:
        if self.providers and not self._local(call.kind, call.name):
            for provider in self.providers:
                if provider.owns(call.kind, call.name):
                    return await provider.provide(call)
        if call.kind == "tool":
            run = self._tools.runner(call.name)
            if run is None:
                raise self._not_found(call, "tool")
            return await run(dict(call.arguments), call.context)
        if call.kind == "resource":
            return await self.sdk._read_resource_result(call.name, call.context)
        prompt = local_prompt(self.sdk, call.name)
        if prompt is None:
            raise self._not_found(call, "prompt")
        missing = [arg.name for arg in prompt.arguments or () if arg.required and arg.name not in call.arguments]
        if missing:
            details = [{"field": name, "message": "Field required", "type": "missing"} for name in missing]
            raise InvalidArguments("missing required prompt arguments", details=details)
        return await self.sdk.get_prompt(call.name, dict(call.arguments) or None, call.context)

    # ----------------------------------------------------------------- serving
    def http_app(self, **options: Any) -> Any:
        """The ASGI app serving ``/mcp`` (Streamable HTTP and WebSocket), ``/health`` and ``/ready``."""
        from mcplane.transports.http import HTTPApp, HTTPOptions

        return HTTPApp(self, HTTPOptions(**{**self.config.http_options(), **options}))

    def run(self, transport: Transport = "stdio", *, host: str = "127.0.0.1", port: int = 8000, **options: Any) -> None:
        """Serve until interrupted: ``stdio`` (default), ``http`` or ``ws`` (same ASGI app)."""
        from mcplane.transports.serve import run

        if transport != "stdio":
            options = {**self.config.http_options(), **options}
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


def _check_policy(tool: str, policy: ToolPolicy) -> None:
    """Refuse a malformed rate limit at registration, not at the first call."""
    if policy.rate_limit is not None:
        from mcplane.middleware.rate_limit import resolve_limits

        resolve_limits(policy.rate_limit, field=f"tool {tool!r} rate_limit")
