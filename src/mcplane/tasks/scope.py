"""The seam between a running call and the task it may become.

The runtime sets :data:`current_scope` around every task-capable call it runs; the per-call
:class:`~mcplane.context.Context` reads it so a tool can ask to become a task
(``await ctx.start_task()``) and so progress reported after the call has been answered with a
task lands on the task (as its ``statusMessage``) instead of on a response stream that has
already closed.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Protocol

__all__ = ["TaskScope", "current_scope"]


class TaskScope(Protocol):
    @property
    def task_id(self) -> str | None:
        """The task's id once the call has become a task; ``None`` while it answers directly."""
        ...

    @property
    def detached(self) -> bool:
        """True once the caller has been answered with a task: nobody reads the response stream."""
        ...

    async def start_task(self) -> str | None:
        """Answer the caller with a task now and keep running as it; returns the task id.

        ``None`` when no task could be created (the store is full: the call is being cancelled).
        """
        ...

    async def progress(self, progress: float, total: float | None, message: str | None) -> None:
        """Record progress on the task (its ``statusMessage``)."""
        ...


current_scope: ContextVar[TaskScope | None] = ContextVar("mcplane_task_scope", default=None)
