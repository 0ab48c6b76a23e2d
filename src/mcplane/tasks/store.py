"""Where task state lives: the :class:`TaskStore` Protocol and its in-memory default.

A store keeps :class:`~mcplane.tasks.model.TaskRecord` values only; the work itself runs in the
:class:`~mcplane.tasks.runtime.TaskRuntime` of the replica that created the task (the spec's
``Mcp-Name: <taskId>`` routing header lets a load balancer send follow-ups there). A shared
store (Redis, PostgreSQL) lets any replica answer ``tasks/get``.

Contract every implementation keeps:

- ``create`` makes the task visible to ``get`` before it returns (the spec forbids answering
  with a ``CreateTaskResult`` before ``tasks/get`` would resolve), and raises
  :class:`TaskCapacityError` when the store is full.
- ``get`` returns a copy; changing it changes nothing until ``save``. Expired tasks read as
  absent (``None``).
- ``save`` replaces the record; saving a deleted or expired task does nothing.
"""

from __future__ import annotations

import copy
import heapq
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from mcplane.tasks.model import TaskRecord

__all__ = ["InMemoryTaskStore", "TaskCapacityError", "TaskStore"]


class TaskCapacityError(Exception):
    """The store holds as many live tasks as it may; retry later."""


class TaskStore(Protocol):
    async def create(self, record: TaskRecord) -> None: ...

    async def get(self, task_id: str) -> TaskRecord | None: ...

    async def save(self, record: TaskRecord) -> None: ...

    async def delete(self, task_id: str) -> None: ...


class InMemoryTaskStore:
    """A bounded, TTL-aware store in this process.

    At most ``max_tasks`` records are kept. When full, expired tasks go first, then the oldest
    finished ones; when every slot holds a live (working or input-required) task, ``create``
    raises :class:`TaskCapacityError`.
    """

    def __init__(self, max_tasks: int = 10_000, *, clock: Callable[[], float] = time.time) -> None:
        if max_tasks < 1:
            raise ValueError("max_tasks must be at least 1")
        self.max_tasks = max_tasks
        self._clock = clock
        self._records: OrderedDict[str, TaskRecord] = OrderedDict()
        self._expiries: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._records)

    async def create(self, record: TaskRecord) -> None:
        self._purge_expired()
        if len(self._records) >= self.max_tasks and not self._evict_finished():
            raise TaskCapacityError(f"{self.max_tasks} tasks are already in flight")
        self._records[record.task_id] = _copy(record)
        if (expires_at := record.expires_at) is not None:
            heapq.heappush(self._expiries, (expires_at, record.task_id))

    async def get(self, task_id: str) -> TaskRecord | None:
        record = self._records.get(task_id)
        if record is None or self._expired(record):
            return None
        return _copy(record)

    async def save(self, record: TaskRecord) -> None:
        current = self._records.get(record.task_id)
        if current is None or self._expired(current):
            return
        self._records[record.task_id] = _copy(record)

    async def delete(self, task_id: str) -> None:
        self._records.pop(task_id, None)

    def _expired(self, record: TaskRecord) -> bool:
        expires_at = record.expires_at
        return expires_at is not None and expires_at <= self._clock()

    def _purge_expired(self) -> None:
        now = self._clock()
        while self._expiries and self._expiries[0][0] <= now:
            _, task_id = heapq.heappop(self._expiries)
            record = self._records.get(task_id)
            if record is not None and self._expired(record):
                del self._records[task_id]

    def _evict_finished(self) -> bool:
        for task_id, record in self._records.items():
            if record.terminal:
                del self._records[task_id]
                return True
        return False


def _copy(record: TaskRecord) -> TaskRecord:
    clone = copy.copy(record)
    clone.input_requests = dict(record.input_requests)
    return clone
