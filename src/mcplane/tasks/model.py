"""The task record and its wire shapes (SEP-2663, ``io.modelcontextprotocol/tasks``).

A :class:`TaskRecord` is plain JSON-able data so any :class:`~mcplane.tasks.store.TaskStore`
can persist it. It renders itself as the two shapes the extension puts on the wire: the flat
``CreateTaskResult`` (``Result & Task``, ``resultType: "task"``) answering ``tools/call``, and
the ``DetailedTask`` answering ``tasks/get`` (and carried by ``notifications/tasks``), which
inlines ``inputRequests``, ``result`` or ``error`` according to the status.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

from mcplane.errors import ConfigError
from mcplane.policy import parse_duration

__all__ = [
    "TASKS_EXTENSION",
    "TERMINAL",
    "TaskMode",
    "TaskPolicy",
    "TaskRecord",
    "TaskStatus",
    "task_policy",
]

TASKS_EXTENSION: Final = "io.modelcontextprotocol/tasks"
"""The extension identifier, advertised under ``capabilities.extensions``."""

TaskStatus = Literal["working", "input_required", "completed", "failed", "cancelled"]
TaskMode = Literal["forbidden", "optional", "required"]
TERMINAL: Final[frozenset[str]] = frozenset({"completed", "failed", "cancelled"})


@dataclass(frozen=True, slots=True)
class TaskPolicy:
    """How one tool uses tasks.

    ``mode`` — ``"optional"``: a call from a client that declared the extension runs as a task,
    any other call answers directly; ``"required"``: calls from clients without the extension
    are refused with ``-32021``; ``"forbidden"``: never a task.

    ``after`` — seconds a task-capable call may run before it becomes a task. ``0`` answers
    with a task at once. A positive value answers directly when the call finishes (or asks for
    input) within that time, and with a task otherwise. ``None`` becomes a task only when the
    tool calls ``await ctx.start_task()``.
    """

    mode: TaskMode = "optional"
    after: float | None = 0.0


def task_policy(task: bool | str | None, after: float | str | None, *, tool: str) -> TaskPolicy | None:
    """Parse the ``task=`` / ``task_after=`` keywords of ``@plane.tool``; ``None`` means no tasks."""
    if task is None or task is False or task == "forbidden":
        return None
    if task is True:
        mode: TaskMode = "optional"
    elif task in ("optional", "required"):
        mode = "optional" if task == "optional" else "required"
    else:
        raise ConfigError(
            f"tool {tool!r}: task must be True, False, 'optional', 'required' or 'forbidden', got {task!r}"
        )
    if after is None:
        return TaskPolicy(mode, None)
    if after == 0 or after == "0":
        return TaskPolicy(mode, 0.0)
    return TaskPolicy(mode, parse_duration(after, field=f"tool {tool!r} task_after"))


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(slots=True)
class TaskRecord:
    """One task's durable state: what ``tasks/get`` reports, from any replica."""

    task_id: str
    tool: str
    owner: str | None = None
    """Who created it; a task is visible to its owner only (``None``: no authentication)."""
    status: TaskStatus = "working"
    status_message: str | None = None
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    ttl_ms: int | None = 3_600_000
    poll_interval_ms: int | None = 1000
    input_requests: dict[str, dict[str, Any]] = field(default_factory=lambda: {})
    """Outstanding server-to-client requests (wire form), keyed by ids unique over the task's life."""
    result: dict[str, Any] | None = None
    """The inlined ``CallToolResult`` (wire form) once ``completed``."""
    error: dict[str, Any] | None = None
    """The JSON-RPC error object (``code``, ``message``, ``data``) once ``failed``."""

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def expires_at(self) -> float | None:
        """Epoch seconds after which the task may be discarded (``None``: never)."""
        return None if self.ttl_ms is None else self.created_at + self.ttl_ms / 1000

    def touch(self, status: TaskStatus | None = None, message: str | None = None) -> None:
        if status is not None:
            self.status = status
        if message is not None:
            self.status_message = message
        self.updated_at = max(time.time(), self.updated_at)

    def task_fields(self) -> dict[str, Any]:
        """The ``Task`` base shape: what every wire form of a task starts with."""
        body: dict[str, Any] = {
            "taskId": self.task_id,
            "status": self.status,
            "createdAt": _iso(self.created_at),
            "lastUpdatedAt": _iso(self.updated_at),
            "ttlMs": self.ttl_ms,
        }
        if self.status_message is not None:
            body["statusMessage"] = self.status_message
        if self.poll_interval_ms is not None:
            body["pollIntervalMs"] = self.poll_interval_ms
        return body

    def create_result(self) -> dict[str, Any]:
        """The flat ``CreateTaskResult`` answering ``tools/call``: no result, error or inputs."""
        return {"resultType": "task", **self.task_fields()}

    def detailed(self) -> dict[str, Any]:
        """The ``DetailedTask``: the task plus what its status carries."""
        body = self.task_fields()
        if self.status == "input_required":
            body["inputRequests"] = dict(self.input_requests)
        elif self.status == "completed" and self.result is not None:
            body["result"] = self.result
        elif self.status == "failed" and self.error is not None:
            body["error"] = self.error
        return body

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able snapshot (for stores that serialize)."""
        return {
            "task_id": self.task_id,
            "tool": self.tool,
            "owner": self.owner,
            "status": self.status,
            "status_message": self.status_message,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "ttl_ms": self.ttl_ms,
            "poll_interval_ms": self.poll_interval_ms,
            "input_requests": self.input_requests,
            "result": self.result,
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskRecord:
        return cls(**data)
