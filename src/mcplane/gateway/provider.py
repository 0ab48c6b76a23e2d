"""The UpstreamProvider: upstream tools, resources and prompts served through a Plane.

The Plane consults it for names it has no local definition of (``plane.add_provider``), so every
pipeline layer — authentication, authorization by glob, rate limits, audit, the timeout/deadline
slot, JSON Schema validation with the upstream's ``inputSchema`` — applies to upstream calls as to
local ones.

Names: a tool ``echo`` of the upstream whose namespace is ``everything`` is ``everything__echo``
(see :data:`~mcplane.gateway.config.SEPARATOR` for why a double underscore); prompts and the
``name`` of resources and templates are namespaced the same way. Resource **URIs are kept as the
upstream wrote them**: tool results embed resource links by URI, and rewriting them would break
those links. A URI offered by two upstreams goes to the first in namespace order (logged).
Lists are merged deterministically: upstreams in namespace order, entries sorted by name.

One upstream may be exposed under its own names (``namespace: false``): it comes first, and a
name of it that starts with another upstream's namespace and ``__`` is hidden (logged), so a
namespace always means one upstream. The provider answers for every name the plane has no local
definition of (:meth:`UpstreamProvider.owns`): a name no catalog lists is ``dependency_unavailable``
while the upstream it would belong to (:meth:`UpstreamProvider.claimant`) has no connected
replica, else ``not_found`` with the whole error object. Each request goes upstream as
:mod:`mcplane.gateway.forward` sends it, in the caller's era.

A versioned tool (``versions:`` in ``gateway.yaml``) is listed once under its exposed name, with
its default version's schema; calls pick a version (see :mod:`mcplane.gateway.versions`).
:meth:`UpstreamProvider.reconfigure` switches upstreams and versions while serving (see
:mod:`mcplane.gateway.reload`).
"""

from __future__ import annotations

import fnmatch
import logging
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, cast

import anyio
from mcp.shared.exceptions import MCPError
from mcp_types import MISSING_REQUIRED_CLIENT_CAPABILITY, InputRequiredResult, Tool

from mcplane.errors import DependencyUnavailable, MCPlaneError, NotFound, UpstreamError
from mcplane.gateway.catalog import ListKind, Merged, in_order, merge
from mcplane.gateway.config import SEPARATOR, GatewayConfig, SharedStateConfig, UpstreamConfig
from mcplane.gateway.endpoint import EndpointConnection, Link
from mcplane.gateway.forward import Caller, Request
from mcplane.gateway.handlers import ResourceSubscriptions, install_handlers
from mcplane.gateway.integrity import ToolIntegrity
from mcplane.gateway.integrity_http import IntegrityEndpoints
from mcplane.gateway.retry import may_retry
from mcplane.gateway.runtime import GatewayRuntime, gateway_running
from mcplane.gateway.tasks import UpstreamTasks
from mcplane.gateway.upstream import Upstream
from mcplane.gateway.versions import VersionRouter
from mcplane.sdk_adapter.context import request_context_of
from mcplane.tool_policy import ToolPolicy, ToolSource

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from mcplane.app import Plane
    from mcplane.gateway.reload import Reloader
    from mcplane.pipeline import Call, CallKind

__all__ = ["ListKind", "UpstreamProvider"]

logger = logging.getLogger("mcplane.gateway")

SHUTDOWN_GRACE = 15.0
"""How long upstream connections may take to close (stdio children to exit) at shutdown."""
DRAIN_POLL = 0.05
"""How often a retired upstream's calls in flight are counted while it drains."""


class UpstreamProvider:
    """Upstreams by name, their catalogs merged under namespaces; open it with :meth:`open`."""

    shared_state: SharedStateConfig | None = None
    """Whether breakers are shared across replicas (``Gateway.from_config`` sets the file's section)."""

    def __init__(
        self,
        upstreams: GatewayConfig | Mapping[str, UpstreamConfig],
        *,
        clock: Callable[[], float] | None = None,
        rand: Callable[[], float] = random.random,
        sleep: Callable[[float], Awaitable[Any]] = anyio.sleep,
        version_rand: Callable[[], float] = random.random,
    ) -> None:
        configs = upstreams.upstreams if isinstance(upstreams, GatewayConfig) else upstreams
        self._options: dict[str, Any] = {"clock": clock, "rand": rand, "sleep": sleep}
        self.subscriptions = ResourceSubscriptions()
        """The 2025-11-25 sessions subscribed to upstream resources (see :mod:`mcplane.gateway.handlers`)."""
        built = [self._build(name, config) for name, config in configs.items()]
        self.upstreams: dict[str, Upstream] = {u.name: u for u in in_order(built)}
        self.versions = VersionRouter(
            upstreams if isinstance(upstreams, GatewayConfig) else None,
            clock=clock or time.monotonic,
            rand=version_rand,
        )
        """The versioned tools (see :mod:`mcplane.gateway.versions`)."""
        self.reloader: Reloader | None = None
        """Run alongside the upstreams while open (``Gateway.from_config(path, reload=True)`` sets it)."""
        self._plane: Plane | None = None
        self._tg: TaskGroup | None = None
        self._running: dict[EndpointConnection, anyio.Event] = {}
        self.catalog = Merged()
        """Every upstream's names as callers see them (see :mod:`mcplane.gateway.catalog`)."""
        self.tasks = UpstreamTasks()
        """Which upstream replica holds each task created through the gateway (see :mod:`mcplane.gateway.tasks`)."""
        integrity = upstreams.integrity if isinstance(upstreams, GatewayConfig) else None
        self.integrity = ToolIntegrity(integrity) if integrity is not None and integrity.enabled else None
        """Tool pins, quarantine and the injection scan (see :mod:`mcplane.gateway.integrity`)."""
        if self.integrity is not None:
            self.integrity.on_change = self._rebuild

    # ----------------------------------------------------------------- the Plane's view
    def owns(self, kind: CallKind, name: str) -> bool:
        """Every name the plane has no local definition of: the gateway answers for it (its upstream's
        answer, ``dependency_unavailable`` while that upstream is down, or ``not_found``)."""
        return True

    def claimant(self, name: str) -> Upstream | None:
        """The upstream a tool or prompt name no catalog lists would be of: the one whose namespace
        prefixes it, else the upstream exposed without a namespace, if any."""
        versioned = self.versions.tools.get(name)
        if versioned is not None:  # not listed yet: its default version's upstream has not listed the tool
            return self.upstreams.get(versioned.config.versions[versioned.config.default].upstream)
        namespace, separator, _ = name.partition(SEPARATOR)
        if separator:
            for upstream in self.upstreams.values():
                if upstream.namespace == namespace:
                    return upstream
        return self._root()

    def _root(self) -> Upstream | None:
        return next((u for u in self.upstreams.values() if u.namespace is None), None)

    def _unknown(self, call: Call) -> MCPError | MCPlaneError:
        """What a call of a name no catalog lists answers (see :meth:`claimant`).

        While the upstream it would belong to has no connected replica (it never connected, or
        lost every connection), the gateway cannot tell whether the name is one of its tools:
        ``dependency_unavailable`` naming that upstream. Otherwise ``not_found``, as a JSON-RPC
        error with the whole error object in ``data`` (plus the ``uri`` of a resource).
        """
        owner = self._root() if call.kind == "resource" else self.claimant(call.name)
        if owner is not None and not any(endpoint.connected for endpoint in owner.endpoints):
            return owner.unavailable()
        error = NotFound(f"Unknown {call.kind}: {call.name}")
        data = error.to_dict(call.context.correlation_id)
        if call.kind == "resource":
            data["uri"] = call.name
        return MCPError(code=error.jsonrpc_code, message=error.message, data=data)

    def policy(self, tool: str) -> ToolPolicy | None:
        """The code-level policy of an upstream tool: its upstream's timeout."""
        return self.catalog.policies.get(tool)

    def source(self, tool: str) -> ToolSource | None:
        """What an upstream tool is: its schema, annotations and upstream."""
        return self.catalog.sources.get(tool)

    def listed(self, kind: ListKind) -> Sequence[Any]:
        return self.catalog.listed[kind]

    async def provide(self, call: Call) -> Any:
        if self.integrity is not None and call.kind == "tool":
            self.integrity.check(call.name)  # a withheld tool: tool_quarantined, not not_found
        if not self.catalog.knows(call.kind, call.name, self.versions):
            raise self._unknown(call)
        caller = Caller.of(call.context)
        if call.kind == "tool":
            if call.name in self.versions:  # a versioned tool: pick its version, then call that target
                return await self._call_version(call, caller)
            upstream, tool = self.catalog.tools[call.name]
            return await self._call_tool(call, caller, upstream, tool)
        if call.kind == "prompt":
            upstream, prompt = self.catalog.prompts[call.name]
            self._check_dependencies(upstream, prompt.name)
            params: dict[str, Any] = {"name": prompt.name}
            if call.arguments:
                params["arguments"] = {key: str(value) for key, value in call.arguments.items()}
            request = Request("prompts/get", params, what=f"prompts/get {prompt.name!r}")
            bound = self._own_timeout(call)
            return _hot_path_answer(call, await self.forward(upstream, request, caller, retry=True, own_timeout=bound))
        owner = self.catalog.resource_upstream(call.name)
        assert owner is not None
        request = Request("resources/read", {"uri": call.name}, what="resources/read")
        bound = self._own_timeout(call)
        return _hot_path_answer(call, await self.forward(owner, request, caller, retry=True, own_timeout=bound))

    @property
    def default_timeout(self) -> float | None:
        """The plane's timeout of a call no policy bounds (its timeout slot's)."""
        plane = self._plane
        return plane.default_timeout if plane is not None else None

    def _own_timeout(self, call: Call) -> float | None:
        """The call's timeout when it, not the caller's deadline, bounds the call (the timeout
        slot's rule: the caller's deadline wins a tie), else ``None``."""
        timeout = call.policy.timeout_or(self.default_timeout)
        if timeout is None:
            return None
        caller = call.context.incoming_timeout()
        return timeout if caller is None or timeout < caller else None

    async def _call_tool(self, call: Call, caller: Caller, upstream: Upstream, tool: Tool) -> Any:
        self._check_dependencies(upstream, tool.name)
        retry = may_retry(tool.name, call.policy.retryable, tool.annotations, upstream.config.retryable)
        request = Request(
            "tools/call",
            {"name": tool.name, "arguments": dict(call.arguments)},
            what=f"tools/call {tool.name!r}",
            tool=tool.name,
        )
        served: list[EndpointConnection] = []
        result = await self.forward(
            upstream, request, caller, retry=retry, served=served, own_timeout=self._own_timeout(call)
        )
        if isinstance(result, dict) and result.get("resultType") == "task" and served:
            self.tasks.created(cast("dict[str, Any]", result), upstream, served[-1], call.context)
        return _hot_path_answer(call, result)

    async def forward(
        self,
        upstream: Upstream,
        request: Request,
        caller: Caller,
        *,
        retry: bool,
        endpoint: EndpointConnection | None = None,
        served: list[EndpointConnection] | None = None,
        own_timeout: float | None = None,
    ) -> Any:
        """``request`` to ``upstream`` for ``caller`` (see :mod:`mcplane.gateway.forward`), with its
        retries, breaker and deadline; ``served`` gets the replica that answered."""

        async def attempt(link: Link, meta: dict[str, Any]) -> Any:
            result = await upstream.send(link, request, meta, caller)
            if served is not None:
                served.extend(e for e in upstream.endpoints if e.sdk is link.sdk or e.legacy == link)
            return result

        return await upstream.request(
            attempt, caller.ctx, retry=retry, what=request.what, endpoint=endpoint, own_timeout=own_timeout
        )

    def _check_dependencies(self, upstream: Upstream, name: str) -> None:
        for glob, dependencies in upstream.config.depends_on.items():
            if not fnmatch.fnmatchcase(name, glob):
                continue
            for dependency in dependencies:
                if not self.upstreams[dependency].healthy():
                    raise DependencyUnavailable(
                        f"dependency {dependency!r} is unavailable", details={"dependency": dependency}
                    )

    async def _call_version(self, call: Call, caller: Caller) -> Any:
        """A versioned tool's call: routed to one version's target, its outcome recorded."""
        router = self.versions
        route = router.route(call.name, call.context)

        async def send_version() -> Any:
            entry = self.catalog.tools.get(route.target)
            if entry is None:  # counts against a canary: it cannot serve
                raise DependencyUnavailable(
                    f"version {route.version!r} of {route.tool!r} is unavailable",
                    details={"dependency": route.target},
                )
            return await self._call_tool(call.replace(name=route.target), caller, *entry)

        return await router.call(route, call.context, send_version)

    def resource_owner(self, uri: str) -> Upstream | None:
        """The upstream serving the resource ``uri`` (a listed resource, else a template that matches)."""
        return self.catalog.resource_upstream(uri)

    def completion_target(self, ref: Any) -> tuple[Upstream, dict[str, Any]] | None:
        """The upstream a ``completion/complete`` reference is for, and the reference in its names."""
        return self.catalog.completion_target(ref)

    def may_ask(self, tool: str) -> bool:
        """Whether a call of ``tool`` could be answered ``input_required`` or with a task: its
        upstream (any upstream, for a versioned tool) speaks 2026-07-28."""
        entry = self.catalog.tools.get(tool)
        upstreams = [entry[0]] if entry is not None and tool not in self.versions else list(self.upstreams.values())
        return any(_modern(endpoint) for upstream in upstreams for endpoint in upstream.endpoints)

    async def forward_task(
        self, upstream: Upstream, endpoint: EndpointConnection, method: str, params: dict[str, Any], ctx: Any
    ) -> Any:
        """A ``tasks/*`` request for a task ``endpoint`` created (see :mod:`mcplane.gateway.tasks`)."""
        plane = self._plane
        assert plane is not None
        context = plane.make_context(ctx, None)
        timeout = upstream.config.timeout or self.default_timeout
        if timeout is not None:
            context = context.replace(deadline=time.monotonic() + timeout)
        request = Request(method, params, what=f"{method} {params.get('taskId')!r}")
        return await self.forward(upstream, request, Caller.of(context), retry=True, endpoint=endpoint)

    # ----------------------------------------------------------------- catalog
    def _rebuild(self) -> None:
        catalog = merge(self.upstreams.values(), self.versions)
        if self.integrity is not None:
            self.integrity.apply(catalog, self.versions)
        self.catalog = catalog
        if self._plane is not None:
            self._plane.providers_changed()

    # ----------------------------------------------------------------- lifespan
    def _build(self, name: str, config: UpstreamConfig) -> Upstream:
        if config.openapi is not None:  # an API described by OpenAPI (see mcplane.openapi)
            from mcplane.openapi.upstream import OpenAPIUpstream

            upstream: Upstream = OpenAPIUpstream(name, config, on_change=self._rebuild, **self._options)
        else:
            upstream = Upstream(name, config, on_change=self._rebuild, **self._options)
        for endpoint in upstream.endpoints:
            endpoint.on_resource_updated = self.subscriptions.updated
        return upstream

    @asynccontextmanager
    async def open(self, plane: Plane) -> AsyncGenerator[None]:
        """Connect every endpoint (waiting for each one's first attempt), serve, then close them all."""
        self._plane = plane
        observability = plane.layers.observability
        self.versions.metrics = observability.metrics if observability is not None else None
        self.versions.publish()
        endpoints = self._open_integrity(plane)
        self._rebuild()
        async with anyio.create_task_group() as tg:
            self._tg = tg
            if self.integrity is not None:
                interval = (self.shared_state or SharedStateConfig()).sync_interval
                tg.start_soon(self.integrity.run, interval)
            await self._start(list(self.upstreams.values()))
            # Readiness checks, gauges, list-changed relay, shared breakers (see mcplane.gateway.runtime).
            running = gateway_running(plane, self.upstreams.values(), self.shared_state)
            self.runtime: GatewayRuntime | None = await running.__aenter__()
            uninstall = install_handlers(plane, self)
            await tg.start(self.runtime.run)
            if self.reloader is not None:
                tg.start_soon(self.reloader.run)
            try:
                yield
            finally:
                uninstall()
                if endpoints is not None:
                    endpoints.uninstall()
                self.runtime = None
                with anyio.CancelScope(shield=True):
                    await running.__aexit__(None, None, None)
                self._tg = None
                running = list(self._running.items())
                for endpoint, _ in running:
                    endpoint.close()
                with anyio.CancelScope(shield=True), anyio.move_on_after(SHUTDOWN_GRACE):
                    for _, done in running:
                        await done.wait()
                tg.cancel_scope.cancel()
                self._plane = None

    def _open_integrity(self, plane: Plane) -> IntegrityEndpoints | None:
        """Bind the integrity guard to the running plane: its state store, metrics and endpoints."""
        integrity = self.integrity
        if integrity is None:
            return None
        state = plane.layers.state
        integrity.store = state.store if state is not None else None
        observability = plane.layers.observability
        integrity.metrics = observability.metrics if observability is not None else None

        async def notify() -> None:  # as an upstream's own list change is relayed, to sessions of both eras
            runtime: GatewayRuntime | None = getattr(self, "runtime", None)
            if runtime is not None:
                await runtime.relay.changed({"tools"})

        integrity.notify = notify
        endpoints = IntegrityEndpoints(plane, integrity, integrity.config.admin)
        endpoints.install()
        return endpoints

    async def _start(self, upstreams: Sequence[Upstream]) -> None:
        """Supervise each endpoint of ``upstreams``; wait (up to their connect timeout) for first attempts."""
        tg = self._tg
        assert tg is not None
        endpoints = [endpoint for upstream in upstreams for endpoint in upstream.endpoints]
        for endpoint in endpoints:
            endpoint.reopen()  # closed by an earlier lifespan of this plane, if there was one
            self._running[endpoint] = anyio.Event()
            tg.start_soon(self._supervise, endpoint)
        wait = max((u.config.connect_timeout for u in upstreams), default=0.0)
        with anyio.move_on_after(wait):
            for endpoint in endpoints:
                await endpoint.first_attempt.wait()

    async def _supervise(self, endpoint: EndpointConnection) -> None:
        try:
            await endpoint.run()
        finally:
            done = self._running.pop(endpoint, None)
            if done is not None:
                done.set()

    async def reconfigure(self, config: GatewayConfig, *, restart: Iterable[str] = (), drain: float = 30.0) -> None:
        """Serve ``config``'s upstreams and versions from now on, without dropping calls in flight.

        Upstreams that are new or named in ``restart`` (changed) are connected first (up to their
        connect timeout); then the catalog switches at once (new calls see only the new set);
        the replaced and removed upstreams keep their connections until their calls in flight
        finish (up to ``drain`` seconds), then close. Versions switch with the catalog, keeping
        the canary state of every unchanged entry.
        """
        again = set(restart)
        keep = {name: u for name, u in self.upstreams.items() if name in config.upstreams and name not in again}
        fresh = [self._build(name, c) for name, c in config.upstreams.items() if name not in keep]
        retired = [u for name, u in self.upstreams.items() if name not in keep]
        if self._tg is not None:
            await self._start(fresh)
        runtime: GatewayRuntime | None = getattr(self, "runtime", None)
        if runtime is not None:  # readiness, gauges, relay, shared breakers for the new connections
            runtime.adopt(fresh)
        self.upstreams = {u.name: u for u in in_order([*keep.values(), *fresh])}
        self.versions = self.versions.reconfigured(config)
        self._rebuild()
        for upstream in retired:
            if self._tg is not None:
                self._tg.start_soon(self._retire, upstream, drain)

    async def _retire(self, upstream: Upstream, drain: float) -> None:
        """Let a replaced or removed upstream's calls in flight finish, then close its connections."""
        with anyio.move_on_after(drain):
            # ``in_flight`` is a plain counter on each endpoint (no event to wait on): look at it.
            while any(endpoint.in_flight for endpoint in upstream.endpoints):  # noqa: ASYNC110
                await anyio.sleep(DRAIN_POLL)
        left = sum(endpoint.in_flight for endpoint in upstream.endpoints)
        if left:
            logger.warning("upstream %s: %d calls in flight after a %g s drain; closing", upstream.name, left, drain)
        runtime: GatewayRuntime | None = getattr(self, "runtime", None)
        if runtime is not None:
            runtime.forget([upstream])
        running = [self._running.get(endpoint) for endpoint in upstream.endpoints]
        for endpoint in upstream.endpoints:
            endpoint.close()
        with anyio.move_on_after(SHUTDOWN_GRACE):
            for done in running:
                if done is not None:
                    await done.wait()
        logger.info("upstream %s: previous connection closed", upstream.name)

    def status(self) -> dict[str, Any]:
        """Each upstream's replicas: connected or not, breaker state, calls in flight."""
        return {
            name: [
                {"endpoint": e.name, "connected": e.connected, "breaker": e.breaker.state, "in_flight": e.in_flight}
                for e in upstream.endpoints
            ]
            for name, upstream in self.upstreams.items()
        }


def _modern(endpoint: EndpointConnection) -> bool:
    link = endpoint.link(modern_caller=True)
    return link is not None and link.modern


def _hot_path_answer(call: Call, result: Any) -> Any:
    """``result``, unless the call came on the hot path (no SDK request context), whose one JSON
    answer cannot carry an ``input_required`` round (its request state is sealed by the SDK path)
    or a task: then the caller did not declare what the upstream asks of it (``-32021``)."""
    if request_context_of(call.context) is not None:
        return result
    if isinstance(result, InputRequiredResult):
        kinds = {request.method for request in (result.input_requests or {}).values()}
        needed = {_CAPABILITY_OF[kind]: {} for kind in kinds if kind in _CAPABILITY_OF}
        raise MCPError(
            code=MISSING_REQUIRED_CLIENT_CAPABILITY,
            message="the upstream asks for input this caller did not declare it can give",
            data={"requiredCapabilities": needed},
        )
    if isinstance(result, dict) and cast("dict[str, Any]", result).get("resultType") == "task":
        raise UpstreamError("the upstream answered with a task the caller did not ask for")
    return result


_CAPABILITY_OF = {"elicitation/create": "elicitation", "sampling/createMessage": "sampling", "roots/list": "roots"}
