"""Helpers for the tasks tests: a tasks-aware in-process client and event-driven waits."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Literal

import anyio
import mcp_types as types
from mcp import Client
from mcp.client.extension import ClaimContext, ClientExtension, NotificationBinding, ResultClaim
from pydantic import ConfigDict, Field, TypeAdapter

from mcplane import Plane
from mcplane.tasks import TASKS_EXTENSION, TaskRecord, TaskStatus

WAIT = 5.0
_ANY = TypeAdapter(dict[str, Any])


class CreateTaskResult(types.Result):
    """The client's view of ``resultType: "task"``: every field kept, for shape assertions."""

    model_config = ConfigDict(extra="allow")
    result_type: Literal["task"] = Field(alias="resultType")
    task_id: str = Field(alias="taskId")
    status: str


class TaskIdParams(types.RequestParams):
    task_id: str = Field(alias="taskId")


class UpdateParams(TaskIdParams):
    input_responses: dict[str, Any] = Field(alias="inputResponses")


class GetTask(types.Request[TaskIdParams, Literal["tasks/get"]]):
    method: Literal["tasks/get"] = "tasks/get"
    name_param = "taskId"


class CancelTask(types.Request[TaskIdParams, Literal["tasks/cancel"]]):
    method: Literal["tasks/cancel"] = "tasks/cancel"
    name_param = "taskId"


class UpdateTask(types.Request[UpdateParams, Literal["tasks/update"]]):
    method: Literal["tasks/update"] = "tasks/update"
    name_param = "taskId"


class ListenParams(types.RequestParams):
    notifications: dict[str, Any]


class Listen(types.Request[ListenParams, Literal["subscriptions/listen"]]):
    method: Literal["subscriptions/listen"] = "subscriptions/listen"


class TaskNotificationParams(types.NotificationParams):
    model_config = ConfigDict(extra="allow")


class TasksClientExtension(ClientExtension):
    """Declares the tasks extension and hands ``CreateTaskResult`` back unresolved."""

    identifier = TASKS_EXTENSION

    def __init__(self, on_notification: Callable[[TaskNotificationParams], Awaitable[None]] | None = None) -> None:
        self._on_notification = on_notification

    def claims(self) -> list[ResultClaim[Any]]:
        async def resolve(result: CreateTaskResult, ctx: ClaimContext) -> types.CallToolResult:
            raise AssertionError("tests read CreateTaskResult with allow_claimed=True")

        return [ResultClaim(result_type="task", model=CreateTaskResult, resolve=resolve)]

    def notifications(self) -> list[NotificationBinding[Any]]:
        if self._on_notification is None:
            return []
        return [
            NotificationBinding(
                method="notifications/tasks", params_type=TaskNotificationParams, handler=self._on_notification
            )
        ]


class TasksClient:
    """An in-process 2026-07-28 client, with or without the tasks extension declared."""

    def __init__(self, client: Client) -> None:
        self.client = client

    async def call(self, name: str, arguments: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        return await self.client.session.call_tool(
            name, arguments or {}, allow_claimed=True, allow_input_required=True, **kwargs
        )

    async def get(self, task_id: str) -> dict[str, Any]:
        return await self.client.session.send_request(GetTask(params=TaskIdParams(taskId=task_id)), _ANY)

    async def cancel(self, task_id: str) -> dict[str, Any]:
        return await self.client.session.send_request(CancelTask(params=TaskIdParams(taskId=task_id)), _ANY)

    async def update(self, task_id: str, responses: dict[str, Any]) -> dict[str, Any]:
        params = UpdateParams(taskId=task_id, inputResponses=responses)
        return await self.client.session.send_request(UpdateTask(params=params), _ANY)

    async def listen(self, notifications: dict[str, Any]) -> dict[str, Any]:
        return await self.client.session.send_request(Listen(params=ListenParams(notifications=notifications)), _ANY)


@asynccontextmanager
async def connect(
    plane: Plane,
    *,
    tasks: bool = True,
    on_notification: Callable[[TaskNotificationParams], Awaitable[None]] | None = None,
) -> AsyncIterator[TasksClient]:
    extensions = [TasksClientExtension(on_notification)] if tasks else []
    async with Client(plane.sdk, mode="2026-07-28", extensions=extensions) as client:
        yield TasksClient(client)


async def wait_status(plane: Plane, task_id: str, *statuses: TaskStatus) -> TaskRecord:
    """Wait (event-driven, under a timeout) until the task reaches one of ``statuses``."""
    runtime = plane.tasks
    assert runtime is not None
    reached = anyio.Event()
    seen: list[TaskRecord] = []

    def listener(record: TaskRecord) -> None:
        if record.task_id == task_id and record.status in statuses:
            seen.append(record)
            reached.set()

    unsubscribe = runtime.subscribe(listener)
    try:
        current = await runtime.store.get(task_id)
        if current is not None and current.status in statuses:
            return current
        with anyio.fail_after(WAIT):
            await reached.wait()
        return seen[0]
    finally:
        unsubscribe()


def elicit_accept(**content: Any) -> dict[str, Any]:
    return {"action": "accept", "content": content}
