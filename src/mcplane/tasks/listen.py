"""Task status notifications: ``subscriptions/listen`` with the extension's ``taskIds`` filter.

A client that declared the tasks extension may add ``taskIds`` to the ``notifications`` filter
of a ``subscriptions/listen`` request; the stream then carries a ``notifications/tasks`` frame
(the complete ``DetailedTask``, as ``tasks/get`` would return it) whenever one of those tasks
changes, next to the core notifications it asked for. The acknowledgement names the task ids
the server agreed to (those the caller may see). A listen request without ``taskIds`` is served
by the SDK's own handler, unchanged; one with ``taskIds`` from a client that did not declare
the extension is refused with ``-32021``. Progress and log messages never ride these streams.
"""

from __future__ import annotations

import logging
from typing import Any, Literal, cast

import anyio
from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import require_client_extension
from mcp.server.subscriptions import SUBSCRIPTION_ID_META_KEY, ListenHandler, ServerEvent, SubscriptionBus
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import event_matches, event_to_notification
from mcp_types import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    SubscriptionFilter,
    SubscriptionsAcknowledgedNotification,
    SubscriptionsAcknowledgedNotificationParams,
    SubscriptionsListenRequestParams,
    SubscriptionsListenResult,
)
from pydantic import BaseModel

from mcplane.tasks.model import TASKS_EXTENSION, TaskRecord
from mcplane.tasks.runtime import TaskRuntime

__all__ = ["TaskListenHandler", "TaskStatusNotification"]

logger = logging.getLogger("mcplane.tasks")


class TaskStatusNotification(BaseModel):
    """``notifications/tasks``: params are the task's ``DetailedTask`` plus the stream's ``_meta``."""

    method: Literal["notifications/tasks"] = "notifications/tasks"
    params: dict[str, Any]


class TaskListenHandler:
    """Serves ``subscriptions/listen``: the SDK's handler, plus ``taskIds`` when asked for.

    Streams that name tasks are bounded like the SDK's own: at most ``max_subscriptions`` at
    once, each ended when ``max_buffered_events`` frames wait unread.
    """

    def __init__(
        self,
        inner: ListenHandler,
        bus: SubscriptionBus,
        runtime: TaskRuntime,
        *,
        max_subscriptions: int = 1024,
        max_buffered_events: int = 1024,
    ) -> None:
        self._inner = inner
        self._bus = bus
        self._runtime = runtime
        self._max_subscriptions = max_subscriptions
        self._max_buffered_events = max_buffered_events
        self._open = 0

    async def __call__(
        self, ctx: ServerRequestContext[Any, Any], params: SubscriptionsListenRequestParams
    ) -> SubscriptionsListenResult:
        requested = (params.notifications.model_extra or {}).get("taskIds")
        if requested is None:
            return await self._inner(ctx, params)
        require_client_extension(ctx, TASKS_EXTENSION)
        subscription_id = ctx.request_id
        if subscription_id is None:
            raise MCPError(INVALID_REQUEST, "subscriptions/listen requires a request id")
        if self._open >= self._max_subscriptions:
            raise MCPError(INTERNAL_ERROR, "Subscription limit reached")
        task_ids = [
            task_id
            for task_id in dict.fromkeys(cast(list[Any], requested) if isinstance(requested, list) else [])
            if isinstance(task_id, str) and await self._runtime.get(ctx, task_id) is not None
        ]
        wanted = frozenset(task_ids)
        core = params.notifications
        honored = SubscriptionFilter.model_validate(
            {
                "toolsListChanged": True if core.tools_list_changed else None,
                "promptsListChanged": True if core.prompts_list_changed else None,
                "resourcesListChanged": True if core.resources_list_changed else None,
                "resourceSubscriptions": list(core.resource_subscriptions) if core.resource_subscriptions else None,
                "taskIds": task_ids,
            }
        )
        uris = frozenset(honored.resource_subscriptions or ())
        meta: dict[str, Any] = {SUBSCRIPTION_ID_META_KEY: subscription_id}
        send, recv = anyio.create_memory_object_stream[BaseModel](self._max_buffered_events)

        def enqueue(frame: BaseModel) -> None:
            try:
                send.send_nowait(frame)
            except anyio.ClosedResourceError:
                pass
            except anyio.WouldBlock:
                logger.warning("listen stream %r backlog full; ending the stream", subscription_id)
                send.close()

        def on_event(event: ServerEvent) -> None:
            if event_matches(honored, uris, event):
                enqueue(event_to_notification(event, meta))

        def on_task(record: TaskRecord) -> None:
            if record.task_id in wanted:
                enqueue(TaskStatusNotification(params={**record.detailed(), "_meta": meta}))

        unsubscribe_bus = self._bus.subscribe(on_event)
        unsubscribe_tasks = self._runtime.subscribe(on_task)
        self._open += 1
        try:
            ack = SubscriptionsAcknowledgedNotification(
                params=SubscriptionsAcknowledgedNotificationParams(notifications=honored, _meta=meta)
            )
            await ctx.session.send_notification(ack, related_request_id=subscription_id)
            async for frame in recv:
                await ctx.session.send_notification(cast(Any, frame), related_request_id=subscription_id)
        finally:
            self._open -= 1
            unsubscribe_bus()
            unsubscribe_tasks()
            send.close()
            recv.close()
        return SubscriptionsListenResult(_meta=meta)
