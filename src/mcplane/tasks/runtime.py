"""The task runtime: runs task-capable calls, answers ``tasks/get|update|cancel``, fans out status.

One :class:`TaskRuntime` per Plane. It is entered with the Plane's lifespan (its task group is
where detached calls keep running after ``tools/call`` has been answered) and shut down with
it, cancelling whatever is still in flight.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
from mcp.server.context import HandlerResult, ServerRequestContext
from mcp_types import CallToolRequestParams

from mcplane.tasks.model import TaskPolicy, TaskRecord
from mcplane.tasks.run import TaskRun
from mcplane.tasks.store import InMemoryTaskStore, TaskStore

__all__ = ["TaskRuntime", "ToolHandler"]

logger = logging.getLogger("mcplane.tasks")

ToolHandler = Callable[[ServerRequestContext[Any, Any], CallToolRequestParams], Awaitable[HandlerResult]]
"""Runs one ``tools/call`` (for a Plane: its whole pipeline) and returns the handler result."""

TaskListener = Callable[[TaskRecord], None]


def _nobody(ctx: ServerRequestContext[Any, Any]) -> str | None:
    return None


class TaskRuntime:
    """Runs task-capable calls and keeps their tasks.

    ``ttl`` (seconds, ``None`` for unlimited) is how long a task stays readable after it is
    created, and bounds how long it may run. ``poll_interval`` is the ``pollIntervalMs`` hint.
    ``owner_of`` names the caller of a request; a task is visible only to the caller that
    created it (the default, ``None`` for everyone, suits a Plane without authentication).
    """

    def __init__(
        self,
        store: TaskStore | None = None,
        *,
        ttl: float | None = 3600.0,
        poll_interval: float | None = 1.0,
        owner_of: Callable[[ServerRequestContext[Any, Any]], str | None] | None = None,
    ) -> None:
        self.store: TaskStore = store if store is not None else InMemoryTaskStore()
        self.ttl_ms = None if ttl is None else max(1, round(ttl * 1000))
        self.poll_interval_ms = None if poll_interval is None else max(1, round(poll_interval * 1000))
        self._owner_of = owner_of or _nobody
        self._handler: ToolHandler | None = None
        self._runs: dict[str, TaskRun] = {}
        self._listeners: dict[object, TaskListener] = {}
        self._group: anyio.abc.TaskGroup | None = None

    def bind(self, handler: ToolHandler) -> None:
        """Set what runs a ``tools/call`` (the Plane's pipeline); done once, at construction."""
        self._handler = handler

    async def invoke(self, ctx: ServerRequestContext[Any, Any], params: CallToolRequestParams) -> HandlerResult:
        if self._handler is None:
            raise RuntimeError("the task runtime has no tool handler bound")
        return await self._handler(ctx, params)

    @property
    def active(self) -> int:
        """Tasks of this process still working or waiting for input."""
        return len(self._runs)

    @asynccontextmanager
    async def running(self) -> AsyncGenerator[TaskRuntime]:
        """Keep a task group for detached calls; on exit, cancel what is still running."""
        async with anyio.create_task_group() as group:
            self._group = group
            try:
                yield self
            finally:
                self._group = None
                group.cancel_scope.cancel()

    # ---------------------------------------------------------------- tools/call
    async def call(
        self, ctx: ServerRequestContext[Any, Any], params: CallToolRequestParams, policy: TaskPolicy
    ) -> HandlerResult:
        """Run a task-capable call for a client that declared the extension."""
        group = self._group
        if group is None:  # not running (no lifespan): nothing could keep a task alive
            return await self.invoke(ctx, params)
        run = TaskRun(self, ctx, params, self._owner_of(ctx))
        group.start_soon(run.main, name=f"mcplane task {params.name}")
        return await run.answer(policy)

    # ---------------------------------------------------------------- tasks/*
    async def get(self, ctx: ServerRequestContext[Any, Any], task_id: str) -> TaskRecord | None:
        """The task as its creator may see it; ``None`` when unknown, expired or someone else's."""
        record = await self.store.get(task_id)
        if record is None or (record.owner is not None and record.owner != self._owner_of(ctx)):
            return None
        return record

    async def update(self, ctx: ServerRequestContext[Any, Any], task_id: str, responses: Mapping[str, Any]) -> bool:
        """Deliver answers; ``False`` when the task is unknown. Raises ``ValueError`` for a bad answer."""
        if await self.get(ctx, task_id) is None:
            return False
        run = self._runs.get(task_id)
        if run is not None and run.record is not None and run.deliver(responses):
            await self._commit(run.record)
        return True

    async def cancel(self, ctx: ServerRequestContext[Any, Any], task_id: str) -> bool:
        """Ask the task to stop; ``False`` when unknown. A finished task stays as it is."""
        if await self.get(ctx, task_id) is None:
            return False
        run = self._runs.get(task_id)
        if run is not None:
            run.cancel_requested = True
            run.scope.cancel()
        return True

    # ---------------------------------------------------------------- status fan-out
    def subscribe(self, listener: TaskListener) -> Callable[[], None]:
        """Call ``listener`` with every task state change; returns an idempotent unsubscribe.

        Listeners are synchronous, run on the event loop and must not block.
        """
        token = object()
        self._listeners[token] = listener

        def unsubscribe() -> None:
            self._listeners.pop(token, None)

        return unsubscribe

    async def _commit(self, record: TaskRecord) -> None:
        await self.store.save(record)
        self._publish(record)

    def _publish(self, record: TaskRecord) -> None:
        for listener in list(self._listeners.values()):
            try:
                listener(record)
            except Exception:  # fan-out boundary: one bad listener must not stop the others
                logger.exception("task status listener raised; continuing")
