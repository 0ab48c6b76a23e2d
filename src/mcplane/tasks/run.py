"""One task-capable ``tools/call``: answered directly, or detached into a task that runs on.

A :class:`TaskRun` executes the call in the runtime's task group from the start, so whether
the caller gets the result itself or a ``CreateTaskResult`` can be decided while the call is
already under way (:class:`~mcplane.tasks.model.TaskPolicy` ``after``). Once it is a task:

- an ``InputRequiredResult`` from the tool parks the task in ``input_required``; its requests
  are published as ``inputRequests`` (keys made unique over the task's life), answers arrive
  through ``tasks/update`` (partial answers allowed), and when every request is answered the
  tool is invoked again with ``inputResponses`` and ``requestState`` exactly as a client would
  retry a multi-round-trip call;
- a JSON-RPC error (``MCPError``) settles it ``failed``; any tool result, ``isError`` included,
  settles it ``completed``;
- ``tasks/cancel`` cancels the work and settles it ``cancelled``; its TTL bounds it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import anyio
import anyio.lowlevel
from mcp.server.context import HandlerResult, ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INTERNAL_ERROR,
    CallToolRequestParams,
    InputRequiredResult,
    InputResponse,
)
from mcp_types import methods as wire_methods
from mcp_types.version import KNOWN_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel, TypeAdapter, ValidationError

from mcplane.errors import RateLimited
from mcplane.tasks.model import TaskPolicy, TaskRecord
from mcplane.tasks.scope import current_scope
from mcplane.tasks.store import TaskCapacityError

if TYPE_CHECKING:
    from mcplane.tasks.runtime import TaskRuntime

__all__ = ["TaskRun"]

logger = logging.getLogger("mcplane.tasks")

_INPUT_RESPONSE: TypeAdapter[InputResponse] = TypeAdapter(InputResponse)


@dataclass(frozen=True, slots=True)
class _Outcome:
    result: HandlerResult = None
    error: dict[str, Any] | None = None


class TaskRun:
    """The life of one task-capable call (see the module docstring)."""

    def __init__(
        self,
        runtime: TaskRuntime,
        ctx: ServerRequestContext[Any, Any],
        params: CallToolRequestParams,
        owner: str | None,
    ) -> None:
        self.runtime = runtime
        self.ctx = ctx
        self.params = params
        self.owner = owner
        self.mode: Literal["inline", "task"] = "inline"
        self.record: TaskRecord | None = None
        self.cancel_requested = False
        self.scope = anyio.CancelScope()
        self._task_id: str | None = None
        self._decided = anyio.Event()
        self._created = anyio.Event()
        self._outcome: _Outcome | None = None
        self._pending: dict[str, str] = {}
        self._answers: dict[str, InputResponse] = {}
        self._input_ready = anyio.Event()
        self._used_keys: set[str] = set()

    # ---------------------------------------------------------------- TaskScope (tool side)
    @property
    def task_id(self) -> str | None:
        return self._task_id

    @property
    def detached(self) -> bool:
        return self.mode == "task"

    async def start_task(self) -> str | None:
        self._decided.set()
        await self._created.wait()
        return self.record.task_id if self.record is not None else None

    async def progress(self, progress: float, total: float | None, message: str | None) -> None:
        await self._created.wait()
        record = self.record
        if record is None or record.terminal:
            return
        text = message if message is not None else (f"{progress:g}/{total:g}" if total else f"{progress:g}")
        record.touch(message=text)
        await self.runtime._commit(record)

    # ---------------------------------------------------------------- interceptor side
    async def answer(self, policy: TaskPolicy) -> HandlerResult:
        """What ``tools/call`` answers: the call's own result, or a ``CreateTaskResult``."""
        try:
            if policy.after is None:
                await self._decided.wait()
            elif policy.after > 0:
                with anyio.move_on_after(policy.after):
                    await self._decided.wait()
            if self._detach():
                await self._materialize()
                assert self.record is not None
                return self.record.create_result()
        except BaseException:
            if self.mode == "inline":
                self.scope.cancel()
            raise
        outcome = self._outcome
        assert outcome is not None
        if outcome.error is not None:
            raise MCPError(outcome.error["code"], outcome.error["message"], outcome.error.get("data"))
        return outcome.result

    def _detach(self) -> bool:
        if self._outcome is not None:
            return False
        self.mode = "task"
        self._task_id = str(uuid.uuid4())
        return True

    async def _materialize(self) -> None:
        assert self._task_id is not None
        runtime = self.runtime
        record = TaskRecord(
            task_id=self._task_id,
            tool=self.params.name,
            owner=self.owner,
            ttl_ms=runtime.ttl_ms,
            poll_interval_ms=runtime.poll_interval_ms,
        )
        try:
            await runtime.store.create(record)
        except TaskCapacityError:
            self.scope.cancel()
            self._created.set()
            refusal = RateLimited("too many tasks in flight; retry later")
            raise MCPError(refusal.jsonrpc_code, refusal.message, refusal.to_dict()) from None
        self.record = record
        runtime._runs[record.task_id] = self
        if runtime.ttl_ms is not None:
            self.scope.deadline = anyio.current_time() + runtime.ttl_ms / 1000
        self._created.set()
        runtime._publish(record)

    # ---------------------------------------------------------------- the work
    async def main(self) -> None:
        """Run in the runtime's task group: execute, then settle (directly or as the task)."""
        token = current_scope.set(self)
        try:
            outcome: _Outcome | None = None
            with self.scope:
                outcome = await self._execute()
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                self.cancel_requested = True
                await self._settle(None)
            raise
        except Exception:
            logger.exception("task run for tool %r crashed", self.params.name)
            outcome = _Outcome(error={"code": INTERNAL_ERROR, "message": "internal error"})
        finally:
            current_scope.reset(token)
        await self._settle(outcome)

    async def _execute(self) -> _Outcome:
        params = self.params
        while True:
            try:
                result = await self.runtime.invoke(self.ctx, params)
            except MCPError as exc:
                return _Outcome(error=exc.error.model_dump(by_alias=True, mode="json", exclude_none=True))
            pending = _input_required(result)
            if pending is None or self.mode == "inline":
                return _Outcome(result=result)
            responses = await self._ask(pending)
            params = params.model_copy(update={"input_responses": responses, "request_state": pending.request_state})

    async def _ask(self, pending: InputRequiredResult) -> dict[str, InputResponse]:
        await self._created.wait()
        record = self.record
        assert record is not None
        self._pending = {}
        self._answers = {}
        wire: dict[str, dict[str, Any]] = {}
        for key, request in (pending.input_requests or {}).items():
            wire_key = key
            suffix = 1
            while wire_key in self._used_keys:
                suffix += 1
                wire_key = f"{key}.{suffix}"
            self._used_keys.add(wire_key)
            self._pending[wire_key] = key
            wire[wire_key] = request.model_dump(by_alias=True, mode="json", exclude_none=True)
        if not wire:
            await anyio.lowlevel.checkpoint()
            return {}
        self._input_ready = anyio.Event()
        record.input_requests = wire
        record.touch("input_required")
        await self.runtime._commit(record)
        await self._input_ready.wait()
        return dict(self._answers)

    def deliver(self, responses: Mapping[str, Any]) -> bool:
        """Apply ``tasks/update`` answers to outstanding requests; unknown keys are ignored.

        Returns whether anything changed. Raises ``ValueError`` naming the first answer that is
        not a valid response, before applying any.
        """
        accepted: dict[str, InputResponse] = {}
        for wire_key, value in responses.items():
            if wire_key not in self._pending:
                continue
            try:
                accepted[wire_key] = _INPUT_RESPONSE.validate_python(value)
            except ValidationError:
                raise ValueError(wire_key) from None
        if not accepted:
            return False
        record = self.record
        assert record is not None
        remaining = dict(record.input_requests)
        for wire_key, response in accepted.items():
            self._answers[self._pending.pop(wire_key)] = response
            remaining.pop(wire_key, None)
        record.input_requests = remaining
        if self._pending:
            record.touch()
        else:
            record.touch("working")
            self._input_ready.set()
        return True

    async def _settle(self, outcome: _Outcome | None) -> None:
        if self.mode == "inline":
            self._outcome = outcome or _Outcome(error={"code": INTERNAL_ERROR, "message": "call cancelled"})
            self._decided.set()
            return
        await self._created.wait()
        record = self.record
        if record is None:
            return
        self.runtime._runs.pop(record.task_id, None)
        record.input_requests = {}
        record.status_message = None  # progress notes describe work that is over now
        if self.cancel_requested:
            record.touch("cancelled")
        elif outcome is None:
            await self.runtime.store.delete(record.task_id)  # its TTL ran out while it worked
            return
        elif outcome.error is not None:
            self._fail(record, outcome.error)
        else:
            try:
                record.result = _wire_result(outcome.result, self.ctx.protocol_version)
                record.touch("completed")
            except ValidationError:
                logger.exception("tool %r returned an invalid result", self.params.name)
                self._fail(record, {"code": INTERNAL_ERROR, "message": "Handler returned an invalid result"})
        await self.runtime._commit(record)

    @staticmethod
    def _fail(record: TaskRecord, error: dict[str, Any]) -> None:
        record.error = error
        record.touch("failed", str(error.get("message", "failed")))


def _input_required(result: HandlerResult) -> InputRequiredResult | None:
    if isinstance(result, InputRequiredResult):
        return result
    if isinstance(result, Mapping) and result.get("resultType") == "input_required":
        return InputRequiredResult.model_validate(result, by_name=False)
    return None


def _wire_result(result: HandlerResult, version: str) -> dict[str, Any]:
    """The tool result as ``tools/call`` would have put it on the wire (``ValidationError`` if invalid)."""
    if isinstance(result, BaseModel):
        dumped = result.model_dump(by_alias=True, mode="json", exclude_none=True)
    else:
        dumped = dict(result or {})
    if version in KNOWN_PROTOCOL_VERSIONS:
        dumped = wire_methods.serialize_server_result("tools/call", version, dumped)
    if version in MODERN_PROTOCOL_VERSIONS:
        dumped.setdefault("resultType", "complete")
    return dumped
