"""The tasks extension end to end, over the SDK's in-process client on the 2026-07-28 wire."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    CallToolResult,
    ElicitRequest,
    ElicitRequestFormParams,
    ElicitResult,
    InputRequiredResult,
    TextContent,
)

from mcplane import Context, Plane
from mcplane.tasks import TASKS_EXTENSION, InMemoryTaskStore, TaskListenHandler, TaskRuntime
from tests.conftest import wire_error_of
from tests.tasks.conftest import WAIT, CreateTaskResult, TasksClient, connect, elicit_accept, wait_status


def _confirm(message: str) -> ElicitRequest:
    schema: dict[str, Any] = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    return ElicitRequest(params=ElicitRequestFormParams(message=message, requested_schema=schema))  # type: ignore[arg-type]


def _ok(response: Any) -> bool | None:
    if isinstance(response, ElicitResult) and response.action == "accept":
        return bool((response.content or {}).get("ok"))
    return None


@dataclass
class Gates:
    """Events the test tools wait on, so every test decides when work finishes."""

    release: anyio.Event = field(default_factory=anyio.Event)
    started: anyio.Event = field(default_factory=anyio.Event)
    stopped: anyio.Event = field(default_factory=anyio.Event)
    calls: list[str] = field(default_factory=lambda: [])


def build_plane(gates: Gates, runtime: TaskRuntime | None = None) -> Plane:
    plane = Plane("tasks-test", tasks=runtime if runtime is not None else True)

    @plane.tool()
    def hello(name: str) -> str:
        return f"Hello, {name}!"

    @plane.tool(task=True)
    async def work(label: str = "job") -> str:
        gates.started.set()
        await gates.release.wait()
        return f"{label} done"

    @plane.tool(task="required")
    def needs_task() -> str:
        return "ran as a task"

    @plane.tool(task=True)
    def tool_error() -> CallToolResult:
        return CallToolResult(content=[TextContent(type="text", text="it broke")], is_error=True)

    @plane.tool(task=True)
    def crash() -> str:
        raise RuntimeError("secret detail that must not reach the client")

    @plane.tool(task=True)
    def protocol_error() -> str:
        raise MCPError(INTERNAL_ERROR, "upstream refused")

    @plane.tool(task=True)
    async def forever() -> str:
        gates.started.set()
        try:
            await anyio.sleep_forever()
        finally:
            gates.stopped.set()
        return "unreachable"

    @plane.tool(task=True)
    def ask(ctx: Context) -> str | InputRequiredResult:
        gates.calls.append(f"ask:{sorted((ctx.input_responses or {}).keys())}")
        answer = _ok((ctx.input_responses or {}).get("confirm"))
        if answer is None:
            return InputRequiredResult(input_requests={"confirm": _confirm("Sure?")}, request_state="round-1")
        return f"confirmed={answer} state={ctx.request_state}"

    @plane.tool(task=True)
    def ask_twice(ctx: Context) -> str | InputRequiredResult:
        responses = ctx.input_responses or {}
        if ctx.request_state is None:  # round 1: two questions at once
            first, second = _ok(responses.get("a")), _ok(responses.get("b"))
            if first is None or second is None:
                return InputRequiredResult(input_requests={"a": _confirm("A?"), "b": _confirm("B?")})
            # round 2 asks "a" again: its wire key must differ from round 1's
            return InputRequiredResult(input_requests={"a": _confirm("A again?")}, request_state=f"b={second}")
        again = _ok(responses.get("a"))
        if again is None:
            return InputRequiredResult(input_requests={"a": _confirm("A again?")}, request_state=ctx.request_state)
        return f"a={again} {ctx.request_state}"

    @plane.tool(task="required", task_after=None)
    async def gather_then_work(ctx: Context) -> str | InputRequiredResult:
        answer = _ok((ctx.input_responses or {}).get("go"))
        if answer is None:
            return InputRequiredResult(input_requests={"go": _confirm("Go?")})
        task_id = await ctx.start_task()
        assert task_id is not None
        assert ctx.task_id == task_id
        await gates.release.wait()
        return f"went={answer}"

    @plane.tool(task=True, task_after="5s")
    def quick() -> str:
        return "fast enough"

    @plane.tool(task=True, task_after="50ms")
    async def slowish() -> str:
        await gates.release.wait()
        return "slow after all"

    @plane.tool(task=True)
    async def progressing(ctx: Context) -> str:
        await ctx.report_progress(1, 4, "a quarter")
        await ctx.info("logs are dropped once the call is a task")
        gates.started.set()
        await gates.release.wait()
        return "progressed"

    return plane


@pytest.fixture
def gates() -> Gates:
    return Gates()


@pytest.fixture
def plane(gates: Gates) -> Plane:
    return build_plane(gates)


async def create(client: TasksClient, name: str, arguments: dict[str, Any] | None = None) -> CreateTaskResult:
    result = await client.call(name, arguments)
    assert isinstance(result, CreateTaskResult), result
    return result


# ---------------------------------------------------------------------------------------- negotiation
async def test_the_extension_is_advertised(plane: Plane) -> None:
    async with Client(plane.sdk) as client:  # auto mode: probes server/discover
        extensions = client.server_capabilities.extensions
    assert extensions is not None
    assert TASKS_EXTENSION in extensions


async def test_plain_tools_and_clients_without_the_extension_get_direct_results(plane: Plane, gates: Gates) -> None:
    gates.release.set()
    async with connect(plane) as client:
        direct = await client.call("hello", {"name": "Ada"})
        assert isinstance(direct, CallToolResult)
        assert direct.content[0].text == "Hello, Ada!"
    async with connect(plane, tasks=False) as client:
        result = await client.call("work", {"label": "sync"})
        assert isinstance(result, CallToolResult)
        assert result.content[0].text == "sync done"
        with pytest.raises(MCPError) as refused:
            await client.call("needs_task")
        assert refused.value.code == MISSING_REQUIRED_CLIENT_CAPABILITY
        assert refused.value.data["requiredCapabilities"]["extensions"] == {TASKS_EXTENSION: {}}
        for probe in (client.get("t"), client.cancel("t"), client.update("t", {})):
            with pytest.raises(MCPError) as gated:
                await probe
            assert gated.value.code == MISSING_REQUIRED_CLIENT_CAPABILITY


async def test_a_plane_without_tasks_refuses_task_tools() -> None:
    plane = Plane("no-tasks", tasks=False)
    assert plane.tasks is None
    with pytest.raises(Exception, match="tasks=False"):
        plane.tool(task=True)(lambda: "x")


# ---------------------------------------------------------------------------------------- lifecycle
async def test_a_task_is_created_durably_and_completes(plane: Plane, gates: Gates) -> None:
    async with connect(plane) as client:
        created = await create(client, "work", {"label": "report"})
        extra = created.model_extra or {}
        assert created.status == "working"
        assert extra["ttlMs"] == 3_600_000
        assert "result" not in extra
        working = await client.get(created.task_id)  # resolves at once: created before answering
        assert working["resultType"] == "complete"
        assert working["status"] == "working"
        assert "result" not in working
        assert "error" not in working
        gates.release.set()
        await wait_status(plane, created.task_id, "completed")
        done = await client.get(created.task_id)
    assert done["status"] == "completed"
    assert done["result"]["content"][0]["text"] == "report done"
    assert done["result"]["isError"] is False
    assert "io.modelcontextprotocol/related-task" not in done["result"].get("_meta", {})


async def test_tool_errors_complete_and_protocol_errors_fail(plane: Plane) -> None:
    async with connect(plane) as client:
        tool_error = await create(client, "tool_error")
        crash = await create(client, "crash")
        failed = await create(client, "protocol_error")
        await wait_status(plane, tool_error.task_id, "completed")
        await wait_status(plane, crash.task_id, "completed")
        await wait_status(plane, failed.task_id, "failed")
        tool_error_view = await client.get(tool_error.task_id)
        crash_view = await client.get(crash.task_id)
        failed_view = await client.get(failed.task_id)
    assert tool_error_view["result"]["isError"] is True
    assert crash_view["result"]["isError"] is True
    assert "secret detail" not in str(crash_view)
    assert wire_error_of(crash_view["result"])["code"] == "internal_error"
    assert failed_view["error"] == {"code": INTERNAL_ERROR, "message": "upstream refused"}
    assert "result" not in failed_view
    assert failed_view["statusMessage"] == "upstream refused"


async def test_cancel_settles_cancelled_and_is_idempotent(plane: Plane, gates: Gates) -> None:
    async with connect(plane) as client:
        created = await create(client, "forever")
        with anyio.fail_after(WAIT):
            await gates.started.wait()
        ack = await client.cancel(created.task_id)
        assert set(ack) <= {"resultType", "_meta"}
        assert ack["resultType"] == "complete"
        with anyio.fail_after(WAIT):
            await gates.stopped.wait()
        await wait_status(plane, created.task_id, "cancelled")
        again = await client.cancel(created.task_id)
        assert again["resultType"] == "complete"
        assert (await client.get(created.task_id))["status"] == "cancelled"


async def test_unknown_task_ids_are_invalid_params(plane: Plane) -> None:
    async with connect(plane) as client:
        for probe in (client.get("nope"), client.cancel("nope"), client.update("nope", {})):
            with pytest.raises(MCPError) as unknown:
                await probe
            assert unknown.value.code == INVALID_PARAMS


# ---------------------------------------------------------------------------------------- input
async def test_input_required_parks_the_task_until_tasks_update(plane: Plane, gates: Gates) -> None:
    async with connect(plane) as client:
        created = await create(client, "ask")
        await wait_status(plane, created.task_id, "input_required")
        parked = await client.get(created.task_id)
        assert parked["inputRequests"]["confirm"]["method"] == "elicitation/create"
        assert "requestState" not in parked
        with pytest.raises(MCPError) as invalid:
            await client.update(created.task_id, {"confirm": 12345})
        assert invalid.value.code == INVALID_PARAMS
        ack = await client.update(created.task_id, {"stray": {"ignored": True}, "confirm": elicit_accept(ok=True)})
        assert ack["resultType"] == "complete"
        assert "status" not in ack
        await wait_status(plane, created.task_id, "completed")
        done = await client.get(created.task_id)
    assert done["result"]["content"][0]["text"] == "confirmed=True state=round-1"
    assert gates.calls == ["ask:[]", "ask:['confirm']"]


async def test_partial_answers_keep_the_task_waiting_and_keys_stay_unique(plane: Plane) -> None:
    async with connect(plane) as client:
        created = await create(client, "ask_twice")
        await wait_status(plane, created.task_id, "input_required")
        assert set((await client.get(created.task_id))["inputRequests"]) == {"a", "b"}
        await client.update(created.task_id, {"a": elicit_accept(ok=True)})
        partial = await client.get(created.task_id)
        assert partial["status"] == "input_required"
        assert set(partial["inputRequests"]) == {"b"}
        await client.update(created.task_id, {"a": elicit_accept(ok=False)})  # already answered: ignored
        runtime = plane.tasks
        assert runtime is not None
        second_round = anyio.Event()

        def listener(record: Any) -> None:
            if record.task_id == created.task_id and "a.2" in record.input_requests:
                second_round.set()

        unsubscribe = runtime.subscribe(listener)
        await client.update(created.task_id, {"b": elicit_accept(ok=False)})
        with anyio.fail_after(WAIT):
            await second_round.wait()
        unsubscribe()
        assert set((await client.get(created.task_id))["inputRequests"]) == {"a.2"}
        await client.update(created.task_id, {"a.2": elicit_accept(ok=True)})
        await wait_status(plane, created.task_id, "completed")
        done = await client.get(created.task_id)
    assert done["result"]["content"][0]["text"] == "a=True b=False"


async def test_multi_round_trip_first_then_a_task(plane: Plane, gates: Gates) -> None:
    async with connect(plane) as client:
        first = await client.call("gather_then_work")
        assert isinstance(first, InputRequiredResult)
        assert "go" in (first.input_requests or {})
        answer = ElicitResult(action="accept", content={"ok": True})
        second = await client.call("gather_then_work", input_responses={"go": answer})
        assert isinstance(second, CreateTaskResult)
        assert "requestState" not in (second.model_extra or {})
        gates.release.set()
        await wait_status(plane, second.task_id, "completed")
        done = await client.get(second.task_id)
    assert done["result"]["content"][0]["text"] == "went=True"


# ---------------------------------------------------------------------------------------- timing
async def test_task_after_answers_fast_calls_directly_and_slow_ones_with_a_task(plane: Plane, gates: Gates) -> None:
    async with connect(plane) as client:
        fast = await client.call("quick")
        assert isinstance(fast, CallToolResult)
        assert fast.content[0].text == "fast enough"
        slow = await create(client, "slowish")
        gates.release.set()
        await wait_status(plane, slow.task_id, "completed")


async def test_progress_on_a_task_becomes_its_status_message(plane: Plane, gates: Gates) -> None:
    async with connect(plane) as client:
        created = await create(client, "progressing")
        with anyio.fail_after(WAIT):
            await gates.started.wait()
        assert (await client.get(created.task_id))["statusMessage"] == "a quarter"
        gates.release.set()
        await wait_status(plane, created.task_id, "completed")
        assert "statusMessage" not in await client.get(created.task_id)


# ---------------------------------------------------------------------------------------- limits
async def test_a_full_store_refuses_new_tasks(gates: Gates) -> None:
    plane = build_plane(gates, TaskRuntime(InMemoryTaskStore(max_tasks=1)))
    async with connect(plane) as client:
        await create(client, "forever")
        with pytest.raises(MCPError) as full:
            await client.call("work")
    assert full.value.data["code"] == "rate_limited"
    assert full.value.data["retryable"] is True


async def test_the_ttl_bounds_a_running_task(gates: Gates) -> None:
    plane = build_plane(gates, TaskRuntime(ttl=0.2, poll_interval=0.05))
    async with connect(plane) as client:
        created = await create(client, "forever")
        assert (created.model_extra or {})["ttlMs"] == 200
        assert (created.model_extra or {})["pollIntervalMs"] == 50
        with anyio.fail_after(WAIT):
            await gates.stopped.wait()
        with pytest.raises(MCPError) as expired:
            await client.get(created.task_id)
    assert expired.value.code == INVALID_PARAMS


async def test_shutting_down_cancels_running_tasks(plane: Plane, gates: Gates) -> None:
    async with connect(plane) as client:
        created = await create(client, "forever")
        with anyio.fail_after(WAIT):
            await gates.started.wait()
    assert gates.stopped.is_set()
    assert plane.tasks is not None
    record = await plane.tasks.store.get(created.task_id)
    assert record is not None
    assert record.status == "cancelled"


# ---------------------------------------------------------------------------------------- notifications
async def test_status_notifications_ride_a_listen_stream_naming_the_task(plane: Plane, gates: Gates) -> None:
    received: list[dict[str, Any]] = []
    completed = anyio.Event()

    async def on_notification(params: Any) -> None:
        received.append(params.model_dump(by_alias=True))
        if params.model_dump(by_alias=True).get("status") == "completed":
            completed.set()

    runtime = plane.tasks
    assert runtime is not None
    subscribed = anyio.Event()
    subscribe = runtime.subscribe

    def subscribe_and_signal(listener: Any) -> Any:
        unsubscribe = subscribe(listener)
        subscribed.set()
        return unsubscribe

    async with connect(plane, on_notification=on_notification) as client:
        created = await create(client, "work")
        runtime.subscribe = subscribe_and_signal  # type: ignore[method-assign]
        async with anyio.create_task_group() as group:
            group.start_soon(client.listen, {"taskIds": [created.task_id, "not-mine"]})
            with anyio.fail_after(WAIT):
                await subscribed.wait()  # the stream subscribes before it acknowledges
            gates.release.set()
            with anyio.fail_after(WAIT):
                await completed.wait()
            group.cancel_scope.cancel()
    final = received[-1]
    assert final["taskId"] == created.task_id
    assert final["result"]["content"][0]["text"] == "job done"
    assert final["_meta"]["io.modelcontextprotocol/subscriptionId"] is not None


async def test_listen_for_tasks_needs_the_extension(plane: Plane) -> None:
    async with connect(plane, tasks=False) as client:
        with pytest.raises(MCPError) as refused:
            await client.listen({"taskIds": ["x"]})
    assert refused.value.code == MISSING_REQUIRED_CLIENT_CAPABILITY


async def test_listen_streams_naming_tasks_are_bounded(plane: Plane) -> None:
    entry = plane.sdk._lowlevel_server.get_request_handler("subscriptions/listen")
    assert entry is not None
    assert isinstance(entry.handler, TaskListenHandler)
    entry.handler._max_subscriptions = 0
    async with connect(plane) as client:
        with pytest.raises(MCPError) as refused:
            await client.listen({"taskIds": ["x"]})
    assert refused.value.code == INTERNAL_ERROR


async def test_a_call_that_cannot_become_a_task_says_so() -> None:
    plane = Plane("plain")
    seen: list[object] = []

    @plane.tool()
    async def plain(ctx: Context) -> str:
        seen.extend([ctx.task_id, await ctx.start_task()])
        return "direct"

    async with connect(plane) as client:
        result = await client.call("plain")
    assert isinstance(result, CallToolResult)
    assert seen == [None, None]
