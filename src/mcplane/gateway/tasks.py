"""Tasks (``io.modelcontextprotocol/tasks``) of upstream tools, through the gateway.

An upstream tool that runs as a task answers ``tools/call`` with a ``CreateTaskResult``; the
gateway relays it as it is (the caller's capabilities, with the extension, went upstream with the
call, see :mod:`mcplane.gateway.forward`) and notes which upstream replica holds the task and who
created it (:class:`UpstreamTasks`). The caller's ``tasks/get``, ``tasks/update`` and
``tasks/cancel`` for that task then go to that replica (the gateway's own task runtime keeps
answering for the gateway's local tools): the extension's own admission applies first (the
``Mcp-Name`` header, the declared extension), then the owner check — a task is visible to the
principal that created it only, as on the upstream itself — then the request travels upstream
with the caller's envelope and its answer comes back as the upstream gave it (without its
``serverInfo`` stamp). What the gateway remembers is per process and bounded
(:data:`MAX_TASKS`, oldest forgotten first); a task the gateway forgot, or one created through
another replica of the gateway, is unknown (``-32602``), as an expired one is upstream.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS

from mcplane.auth.middleware import principal_of
from mcplane.context import ANONYMOUS, Context, Principal
from mcplane.sdk_adapter.mcpserver import lowlevel_server, remove_request_handler
from mcplane.tasks.extension import TaskIdRequestParams, UpdateTaskRequestParams, admit

if TYPE_CHECKING:
    from mcplane.app import Plane
    from mcplane.gateway.endpoint import EndpointConnection
    from mcplane.gateway.provider import UpstreamProvider
    from mcplane.gateway.upstream import Upstream

__all__ = ["MAX_TASKS", "TaskRoute", "UpstreamTasks", "install_task_routing"]

MAX_TASKS = 10_000
_METHODS = ("tasks/get", "tasks/update", "tasks/cancel")


@dataclass(frozen=True, slots=True)
class TaskRoute:
    upstream: str
    endpoint: int
    """The index of the replica that created it."""
    owner: str


def _owner(principal: Principal) -> str:
    return f"{principal.tenant or ''}/{principal.subject}"


class UpstreamTasks:
    """Task id → the upstream replica holding it and its owner (at most :data:`MAX_TASKS`)."""

    def __init__(self) -> None:
        self._routes: OrderedDict[str, TaskRoute] = OrderedDict()

    def created(self, result: dict[str, Any], upstream: Upstream, endpoint: EndpointConnection, ctx: Context) -> None:
        task_id = result.get("taskId")
        if not isinstance(task_id, str):
            return
        self._routes[task_id] = TaskRoute(upstream.name, endpoint.index, _owner(ctx.principal))
        self._routes.move_to_end(task_id)
        while len(self._routes) > MAX_TASKS:
            self._routes.popitem(last=False)

    def route(self, task_id: str, principal: Principal) -> TaskRoute | None:
        found = self._routes.get(task_id)
        if found is None or found.owner != _owner(principal):
            return None
        return found

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._routes


Handler = Callable[[ServerRequestContext[Any, Any], Any], Awaitable[Any]]


def install_task_routing(plane: Plane, provider: UpstreamProvider) -> Callable[[], None]:
    """Route ``tasks/*`` of upstream tasks upstream (see the module doc); returns the undo."""
    lowlevel = lowlevel_server(plane.sdk)
    previous = {method: lowlevel.get_request_handler(method) for method in _METHODS}

    def routed(method: str) -> Handler:
        entry = previous[method]

        async def handle(ctx: ServerRequestContext[Any, Any], params: Any) -> Any:
            task_id: str = params.task_id
            if task_id not in provider.tasks:
                if entry is None:
                    raise MCPError(INVALID_PARAMS, "Failed to retrieve task: Task not found", {"taskId": task_id})
                return await entry.handler(ctx, params)
            admit(ctx, task_id)
            route = provider.tasks.route(task_id, principal_of(ctx) or ANONYMOUS)
            upstream = provider.upstreams.get(route.upstream) if route is not None else None
            if route is None or upstream is None or route.endpoint >= len(upstream.endpoints):
                raise MCPError(INVALID_PARAMS, "Failed to retrieve task: Task not found", {"taskId": task_id})
            wire = params.model_dump(by_alias=True, mode="json", exclude_none=True, exclude={"meta"})
            return await provider.forward_task(upstream, upstream.endpoints[route.endpoint], method, wire, ctx)

        return handle

    kinds = (TaskIdRequestParams, UpdateTaskRequestParams, TaskIdRequestParams)
    for method, params_type in zip(_METHODS, kinds, strict=True):
        lowlevel.add_request_handler(method, params_type, routed(method))

    def undo() -> None:
        for method, entry in previous.items():
            if entry is not None:
                lowlevel.add_request_handler(method, entry.params_type, entry.handler)
            else:
                remove_request_handler(lowlevel, method)

    return undo
