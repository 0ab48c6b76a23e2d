"""Tasks: long-running tool calls answered with a task handle (``io.modelcontextprotocol/tasks``).

The official SDK has no tasks; this package implements the extension (SEP-2663, 2026-07-28
wire) as an SDK :class:`~mcp.server.extension.Extension`, so a slow tool answers at once with a
``CreateTaskResult`` and the client polls ``tasks/get`` instead of hitting its timeout.

**Enabled by default.** ``Plane(name)`` installs the extension (and advertises it under
``capabilities.extensions``) with an in-memory store: tasks live one hour, at most 10 000 at a
time. ``Plane(name, tasks=TaskRuntime(store=..., ttl=..., poll_interval=...))`` configures it;
``Plane(name, tasks=False)`` leaves it out. Nothing becomes a task unless a tool opts in::

    @plane.tool(task=True)                 # "optional": a task for clients that declared the extension
    async def render(scene: str) -> str: ...

    @plane.tool(task="required")           # clients without the extension get -32021
    async def export(dataset: str) -> str: ...

    @plane.tool(task=True, task_after="500ms")   # answer directly if done within 500 ms
    async def lookup(key: str) -> str: ...

Inside the tool, ``ctx.task_id`` is the task's id once the call has become one;
``await ctx.start_task()`` turns the call into a task on the spot (with ``task_after=None``
that is the only way, so the tool can first gather input with multi-round-trip
``InputRequiredResult`` rounds and then go asynchronous); ``ctx.report_progress(...)`` on a
task updates its ``statusMessage``. A tool that returns an ``InputRequiredResult`` while it runs
as a task parks the task in ``input_required``; the client answers with ``tasks/update`` and the
tool is called again with ``ctx.input_responses`` and ``ctx.request_state``, exactly as on a
multi-round-trip retry, so the same tool code serves both.

A tool error (``isError``) settles a task ``completed``; a JSON-RPC error (``MCPError``) settles
it ``failed``; ``tasks/cancel`` settles it ``cancelled``. Status changes are pushed as
``notifications/tasks`` on ``subscriptions/listen`` streams that name the task in ``taskIds``.
Store backends implement :class:`TaskStore`.
"""

from mcplane.tasks.extension import TasksExtension, client_declared_tasks
from mcplane.tasks.listen import TaskListenHandler, TaskStatusNotification
from mcplane.tasks.model import TASKS_EXTENSION, TERMINAL, TaskMode, TaskPolicy, TaskRecord, TaskStatus, task_policy
from mcplane.tasks.runtime import TaskRuntime, ToolHandler
from mcplane.tasks.scope import TaskScope, current_scope
from mcplane.tasks.store import InMemoryTaskStore, TaskCapacityError, TaskStore

__all__ = [
    "TASKS_EXTENSION",
    "TERMINAL",
    "InMemoryTaskStore",
    "TaskCapacityError",
    "TaskListenHandler",
    "TaskMode",
    "TaskPolicy",
    "TaskRecord",
    "TaskRuntime",
    "TaskScope",
    "TaskStatus",
    "TaskStatusNotification",
    "TaskStore",
    "TasksExtension",
    "ToolHandler",
    "client_declared_tasks",
    "current_scope",
    "task_policy",
]
