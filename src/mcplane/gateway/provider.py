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
"""

from __future__ import annotations

import fnmatch
import logging
import random
import re
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Literal

import anyio
from mcp import Client as SDKClient
from mcp_types import Prompt, Tool

from mcplane.errors import DependencyUnavailable, NotFound
from mcplane.gateway.config import SEPARATOR, GatewayConfig, UpstreamConfig
from mcplane.gateway.retry import may_retry
from mcplane.gateway.upstream import Upstream

if TYPE_CHECKING:
    from mcplane.app import Plane
    from mcplane.pipeline import Call, CallKind

__all__ = ["ListKind", "UpstreamProvider"]

logger = logging.getLogger("mcplane.gateway")

ListKind = Literal["tool", "resource", "resource_template", "prompt"]
SHUTDOWN_GRACE = 15.0
"""How long upstream connections may take to close (stdio children to exit) at shutdown."""


class UpstreamProvider:
    """Upstreams by name, their catalogs merged under namespaces; open it with :meth:`open`."""

    def __init__(
        self,
        upstreams: GatewayConfig | Mapping[str, UpstreamConfig],
        *,
        clock: Callable[[], float] | None = None,
        rand: Callable[[], float] = random.random,
        sleep: Callable[[float], Awaitable[Any]] = anyio.sleep,
    ) -> None:
        configs = upstreams.upstreams if isinstance(upstreams, GatewayConfig) else upstreams
        built = [
            Upstream(name, config, on_change=self._rebuild, clock=clock, rand=rand, sleep=sleep)
            for name, config in configs.items()
        ]
        self.upstreams: dict[str, Upstream] = {u.name: u for u in sorted(built, key=lambda u: u.namespace)}
        self._plane: Plane | None = None
        self._tools: dict[str, tuple[Upstream, Tool]] = {}
        self._prompts: dict[str, tuple[Upstream, Prompt]] = {}
        self._uris: dict[str, Upstream] = {}
        self._templates: list[tuple[re.Pattern[str], Upstream]] = []
        self._listed: dict[ListKind, list[Any]] = {"tool": [], "resource": [], "resource_template": [], "prompt": []}
        self._policies: dict[str, dict[str, Any]] = {}

    # ----------------------------------------------------------------- the Plane's view
    def owns(self, kind: CallKind, name: str) -> bool:
        if kind == "tool":
            return name in self._tools
        if kind == "prompt":
            return name in self._prompts
        return self._resource_upstream(name) is not None

    def policy(self, tool: str) -> Mapping[str, Any] | None:
        """The code-level policy of an upstream tool: its schema, annotations and timeout."""
        return self._policies.get(tool)

    def listed(self, kind: ListKind) -> Sequence[Any]:
        return self._listed[kind]

    async def provide(self, call: Call) -> Any:
        ctx = call.context
        if call.kind == "tool":
            entry = self._tools.get(call.name)
            if entry is None:
                raise NotFound(f"unknown tool {call.name!r}")
            upstream, tool = entry
            self._check_dependencies(upstream, tool.name)
            arguments = dict(call.arguments)
            retry = may_retry(tool.name, call.policy, tool.annotations, upstream.config.retryable)

            async def call_tool(client: SDKClient, meta: dict[str, Any]) -> Any:
                return await client.call_tool(tool.name, arguments, meta=meta)  # pyright: ignore[reportArgumentType]

            return await upstream.request(call_tool, ctx, retry=retry, what=f"tools/call {tool.name!r}")
        if call.kind == "prompt":
            found = self._prompts.get(call.name)
            if found is None:
                raise NotFound(f"unknown prompt {call.name!r}")
            upstream, prompt = found
            self._check_dependencies(upstream, prompt.name)
            prompt_args = {key: str(value) for key, value in call.arguments.items()} or None

            async def get_prompt(client: SDKClient, meta: dict[str, Any]) -> Any:
                return await client.get_prompt(prompt.name, prompt_args, meta=meta)  # pyright: ignore[reportArgumentType]

            return await upstream.request(get_prompt, ctx, retry=True, what=f"prompts/get {prompt.name!r}")
        owner = self._resource_upstream(call.name)
        if owner is None:
            raise NotFound(f"unknown resource {call.name!r}")
        uri = call.name

        async def read_resource(client: SDKClient, meta: dict[str, Any]) -> Any:
            return await client.read_resource(uri, meta=meta)  # pyright: ignore[reportArgumentType]

        return await owner.request(read_resource, ctx, retry=True, what="resources/read")

    def _check_dependencies(self, upstream: Upstream, name: str) -> None:
        for glob, dependencies in upstream.config.depends_on.items():
            if not fnmatch.fnmatchcase(name, glob):
                continue
            for dependency in dependencies:
                if not self.upstreams[dependency].healthy():
                    raise DependencyUnavailable(
                        f"dependency {dependency!r} is unavailable", details={"dependency": dependency}
                    )

    def _resource_upstream(self, uri: str) -> Upstream | None:
        found = self._uris.get(uri)
        if found is not None:
            return found
        for pattern, upstream in self._templates:
            if pattern.fullmatch(uri):
                return upstream
        return None

    # ----------------------------------------------------------------- catalog
    def _rebuild(self) -> None:
        tools: dict[str, tuple[Upstream, Tool]] = {}
        prompts: dict[str, tuple[Upstream, Prompt]] = {}
        uris: dict[str, Upstream] = {}
        templates: list[tuple[re.Pattern[str], Upstream]] = []
        listed: dict[ListKind, list[Any]] = {"tool": [], "resource": [], "resource_template": [], "prompt": []}
        policies: dict[str, dict[str, Any]] = {}
        for upstream in self.upstreams.values():
            prefix = upstream.namespace + SEPARATOR
            catalog = upstream.catalog
            for name in sorted(catalog.tools):
                tool = catalog.tools[name]
                exposed = prefix + name
                tools[exposed] = (upstream, tool)
                listed["tool"].append(tool.model_copy(update={"name": exposed}))
                policy: dict[str, Any] = {"json_schema": tool.input_schema, "upstream": upstream.name}
                if tool.annotations is not None:
                    policy["annotations"] = tool.annotations
                if upstream.config.timeout is not None:
                    policy["timeout"] = upstream.config.timeout
                policies[exposed] = policy
            for name in sorted(catalog.prompts):
                prompt = catalog.prompts[name]
                prompts[prefix + name] = (upstream, prompt)
                listed["prompt"].append(prompt.model_copy(update={"name": prefix + name}))
            for resource in sorted(catalog.resources, key=lambda r: (r.name, str(r.uri))):
                uri = str(resource.uri)
                if uri in uris:
                    logger.warning("resource %r of %r is hidden by %r's", uri, upstream.name, uris[uri].name)
                    continue
                uris[uri] = upstream
                listed["resource"].append(resource.model_copy(update={"name": prefix + resource.name}))
            for template in sorted(catalog.templates, key=lambda t: (t.name, t.uri_template)):
                templates.append((template_pattern(template.uri_template), upstream))
                listed["resource_template"].append(template.model_copy(update={"name": prefix + template.name}))
        self._tools, self._prompts, self._uris, self._templates = tools, prompts, uris, templates
        self._listed, self._policies = listed, policies
        if self._plane is not None:
            self._plane.providers_changed()

    # ----------------------------------------------------------------- lifespan
    @asynccontextmanager
    async def open(self, plane: Plane) -> AsyncGenerator[None]:
        """Connect every endpoint (waiting for each one's first attempt), serve, then close them all."""
        self._plane = plane
        self._rebuild()
        endpoints = [endpoint for upstream in self.upstreams.values() for endpoint in upstream.endpoints]
        done = [anyio.Event() for _ in endpoints]

        async def supervise(index: int) -> None:
            try:
                await endpoints[index].run()
            finally:
                done[index].set()

        async with anyio.create_task_group() as tg:
            for index in range(len(endpoints)):
                tg.start_soon(supervise, index)
            wait = max((u.config.connect_timeout for u in self.upstreams.values()), default=0.0)
            with anyio.move_on_after(wait):
                for endpoint in endpoints:
                    await endpoint.first_attempt.wait()
            try:
                yield
            finally:
                for endpoint in endpoints:
                    endpoint.close()
                with anyio.CancelScope(shield=True), anyio.move_on_after(SHUTDOWN_GRACE):
                    for event in done:
                        await event.wait()
                tg.cancel_scope.cancel()
                self._plane = None

    def status(self) -> dict[str, Any]:
        """Each upstream's replicas: connected or not, breaker state, calls in flight."""
        return {
            name: [
                {"endpoint": e.name, "connected": e.connected, "breaker": e.breaker.state, "in_flight": e.in_flight}
                for e in upstream.endpoints
            ]
            for name, upstream in self.upstreams.items()
        }


_EXPRESSION = re.compile(r"\{([+#./;?&]?)([^}]*)\}")


def template_pattern(template: str) -> re.Pattern[str]:
    """A regex matching the URIs an RFC 6570 template expands to (level 1-3 operators)."""
    parts: list[str] = []
    position = 0
    for match in _EXPRESSION.finditer(template):
        parts.append(re.escape(template[position : match.start()]))
        operator = match.group(1)
        if operator in ("+", "#"):
            parts.append(".*")
        elif operator in ("?", "&"):
            parts.append(r"(?:[?&][^#]*)?")
        else:
            parts.append(r"[^/?#]*")
        position = match.end()
    parts.append(re.escape(template[position:]))
    return re.compile("".join(parts))
