"""``io.modelcontextprotocol/tasks`` as an SDK :class:`~mcp.server.extension.Extension`.

The extension advertises itself under ``capabilities.extensions``, serves ``tasks/get``,
``tasks/update`` and ``tasks/cancel`` (2026-07-28 wire only; the removed ``tasks/result`` and
``tasks/list`` stay ``-32601``), and intercepts ``tools/call``:

- a tool without a task policy, or a call on a handshake-era (2025-11-25) connection, which
  cannot carry a ``CreateTaskResult``, passes straight through;
- a client that did not declare the extension on this request gets the tool's direct result,
  or ``-32021`` (Missing Required Client Capability) when the tool's task support is
  ``"required"``;
- otherwise the runtime runs the call and answers with its result or a ``CreateTaskResult``.

Every ``tasks/*`` request must come from a client that declared the extension (``-32021``) and,
over HTTP, carry ``Mcp-Name: <taskId>`` (``-32020`` when missing or different). An unknown,
expired or foreign ``taskId`` is ``-32602``.

It must be the innermost ``tools/call`` interceptor (the Plane installs it last): the runtime
re-invokes the bound handler directly when a task resumes after input.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.extension import Extension, MethodBinding
from mcp.server.mcpserver import require_client_extension
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import MCP_NAME_HEADER, decode_header_value
from mcp_types import HEADER_MISMATCH, INVALID_PARAMS, CallToolRequestParams, RequestParams
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import Field

from mcplane.tasks.model import TASKS_EXTENSION, TaskPolicy
from mcplane.tasks.runtime import TaskRuntime

__all__ = ["TaskIdRequestParams", "TasksExtension", "UpdateTaskRequestParams", "admit", "client_declared_tasks"]

_MODERN = frozenset(MODERN_PROTOCOL_VERSIONS)


class TaskIdRequestParams(RequestParams):
    """Params of ``tasks/get`` and ``tasks/cancel``."""

    task_id: str = Field(alias="taskId")


class UpdateTaskRequestParams(TaskIdRequestParams):
    """Params of ``tasks/update``: answers keyed like the task's ``inputRequests``.

    Values stay raw here: answers to keys that are not outstanding are ignored unread, and
    the runtime validates the ones it uses.
    """

    input_responses: dict[str, Any] = Field(alias="inputResponses")


def client_declared_tasks(ctx: ServerRequestContext[Any, Any]) -> bool:
    """Whether this request's client declared the tasks extension (per request on 2026-07-28)."""
    capabilities = ctx.session.client_capabilities
    extensions = capabilities.extensions if capabilities is not None else None
    return bool(extensions) and TASKS_EXTENSION in (extensions or {})


class TasksExtension(Extension):
    """Serves the tasks extension for the tools whose policy ``policy_for`` returns."""

    identifier = TASKS_EXTENSION

    def __init__(self, runtime: TaskRuntime, policy_for: Callable[[str], TaskPolicy | None]) -> None:
        self.runtime = runtime
        self._policy_for = policy_for

    def methods(self) -> Sequence[MethodBinding]:
        return (
            MethodBinding("tasks/get", TaskIdRequestParams, self._get, protocol_versions=_MODERN),
            MethodBinding("tasks/update", UpdateTaskRequestParams, self._update, protocol_versions=_MODERN),
            MethodBinding("tasks/cancel", TaskIdRequestParams, self._cancel, protocol_versions=_MODERN),
        )

    async def intercept_tool_call(
        self, params: CallToolRequestParams, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        policy = self._policy_for(params.name)
        if policy is None or ctx.protocol_version not in _MODERN:
            return await call_next(ctx)
        if not client_declared_tasks(ctx):
            if policy.mode == "required":
                require_client_extension(ctx, TASKS_EXTENSION)
            return await call_next(ctx)
        return await self.runtime.call(ctx, params, policy)

    # ---------------------------------------------------------------- tasks/*
    async def _get(self, ctx: ServerRequestContext[Any, Any], params: TaskIdRequestParams) -> dict[str, Any]:
        admit(ctx, params.task_id)
        record = await self.runtime.get(ctx, params.task_id)
        if record is None:
            raise _unknown_task(params.task_id)
        return {"resultType": "complete", **record.detailed()}

    async def _update(self, ctx: ServerRequestContext[Any, Any], params: UpdateTaskRequestParams) -> dict[str, Any]:
        admit(ctx, params.task_id)
        try:
            known = await self.runtime.update(ctx, params.task_id, params.input_responses)
        except ValueError as exc:
            raise MCPError(
                INVALID_PARAMS, "inputResponses holds an invalid response", {"taskId": params.task_id, "key": str(exc)}
            ) from None
        if not known:
            raise _unknown_task(params.task_id)
        return {"resultType": "complete"}

    async def _cancel(self, ctx: ServerRequestContext[Any, Any], params: TaskIdRequestParams) -> dict[str, Any]:
        admit(ctx, params.task_id)
        if not await self.runtime.cancel(ctx, params.task_id):
            raise _unknown_task(params.task_id)
        return {"resultType": "complete"}


def admit(ctx: ServerRequestContext[Any, Any], task_id: str) -> None:
    """The routing header first (a transport concern), then the negotiated capability."""
    headers: Mapping[str, str] | None = getattr(ctx.request, "headers", None)
    if headers is not None and decode_header_value((headers.get(MCP_NAME_HEADER) or "").strip()) != task_id:
        raise MCPError(HEADER_MISMATCH, f"{MCP_NAME_HEADER} header does not match the request body's 'taskId'")
    require_client_extension(ctx, TASKS_EXTENSION)


def _unknown_task(task_id: str) -> MCPError:
    return MCPError(INVALID_PARAMS, "Failed to retrieve task: Task not found", {"taskId": task_id})
