"""What flows back through the gateway from real upstream processes: list changes, progress,
cancellation and elicitation."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from mcp.client.session import ClientRequestContext
from mcp_types import (
    CreateMessageRequestParams,
    CreateMessageResult,
    ElicitRequestParams,
    ElicitResult,
    ListRootsResult,
    LoggingMessageNotificationParams,
    ResourceUpdatedNotification,
    Root,
    TextContent,
    ToolListChangedNotification,
)

from mcplane import Plane
from mcplane.gateway import Gateway
from tests.conftest import REPO_ROOT, start_server
from tests.gateway.conftest import UPSTREAM_APP, NodeServer, text_of

WAIT = 20.0


def _stdio(**options: Any) -> dict[str, Any]:
    command = {
        "command": sys.executable,
        "args": ["-m", "mcplane.cli", "run", str(UPSTREAM_APP)],
        "cwd": str(REPO_ROOT),
    }
    return {"endpoints": [command], **options}


def _plane(upstreams: dict[str, Any]) -> Plane:
    return Gateway.from_config({"server": {"default_timeout": "20s"}, "upstreams": upstreams})


async def test_an_upstream_list_change_reaches_both_eras() -> None:
    plane = _plane({"up": _stdio(mode="legacy")})
    heard = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(getattr(message, "root", message), ToolListChangedNotification):
            heard.set()

    async with (
        Client(plane.sdk, mode="legacy", message_handler=on_message) as legacy,
        Client(plane.sdk, mode="2026-07-28") as modern,
    ):
        names = {tool.name for tool in (await legacy.list_tools()).tools}
        assert "up__fresh" not in names
        async with modern.listen(tools_list_changed=True) as subscription:
            assert text_of(await legacy.call_tool("up__grow", {"name": "fresh"})) == "grown"
            with anyio.fail_after(WAIT):
                await heard.wait()  # the 2025-11-25 session got notifications/tools/list_changed
                async for _event in subscription:  # the 2026-07-28 listen stream got its event
                    break
        assert "up__fresh" in {tool.name for tool in (await legacy.list_tools()).tools}
        assert text_of(await legacy.call_tool("up__fresh", {})) == "fresh"


async def test_upstream_progress_is_progress_on_the_callers_request() -> None:
    plane = _plane({"up": _stdio()})
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async with Client(plane.sdk, mode="legacy") as client:
        result = await client.call_tool("up__count_up", {"steps": 3}, progress_callback=on_progress)
        assert text_of(result) == "counted 3"
        assert seen == [(1, 3, "step 1"), (2, 3, "step 2"), (3, 3, "step 3")]
        # Without a progress callback the call still works (and the upstream gets no token).
        assert text_of(await client.call_tool("up__count_up", {"steps": 2})) == "counted 2"


async def test_server_everything_long_running_operation_reports_progress(everything_http: NodeServer) -> None:
    plane = _plane({"everything": {"endpoints": [{"url": everything_http.url}], "mode": "legacy"}})
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    async with Client(plane.sdk, mode="legacy") as client:
        arguments = {"duration": 0.3, "steps": 3}
        result = await client.call_tool(
            "everything__trigger-long-running-operation", arguments, progress_callback=on_progress
        )
        assert not result.is_error
    assert seen == [1, 2, 3]


async def test_cancelling_a_gateway_call_cancels_the_upstream_call(tmp_path: Path) -> None:
    plane = _plane({"up": _stdio(mode="legacy")})
    marker = tmp_path / "cancelled"
    async with Client(plane.sdk, mode="legacy") as client:
        with anyio.move_on_after(1.0):  # the caller gives up on a call that never answers
            await client.call_tool("up__wait_cancelled", {"marker": str(marker)})
        with anyio.fail_after(WAIT):
            while True:
                if marker.exists():
                    break
                await anyio.sleep(0.05)  # polling the upstream's marker under the bound above
    assert marker.read_text() == "cancelled"


async def test_an_upstream_question_is_asked_of_the_caller() -> None:
    plane = _plane({"up": _stdio(mode="legacy")})
    asked: list[str] = []

    async def answer(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        asked.append(params.message)
        return ElicitResult(action="accept", content={"name": "Ada"})

    async with Client(plane.sdk, mode="legacy", elicitation_callback=answer) as client:
        assert text_of(await client.call_tool("up__ask_name", {})) == "hello Ada"
    assert asked == ["What is your name?"]


async def test_over_http_each_question_goes_to_its_own_caller(tmp_path: Path) -> None:
    server = start_server(UPSTREAM_APP, tmp_path=tmp_path)
    plane = _plane({"up": {"endpoints": [{"url": server.url}], "mode": "legacy"}})
    both_asked = anyio.Event()
    waiting: list[str] = []

    def answering(name: str) -> Any:
        async def answer(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
            waiting.append(name)
            if len(waiting) == 2:
                both_asked.set()
            with anyio.fail_after(WAIT):
                await both_asked.wait()  # both calls are in flight on the one upstream session
            return ElicitResult(action="accept", content={"name": name})

        return answer

    results: dict[str, str] = {}
    try:
        async with (
            Client(plane.sdk, mode="legacy", elicitation_callback=answering("Ada")) as ada,
            Client(plane.sdk, mode="legacy", elicitation_callback=answering("Grace")) as grace,
        ):

            async def call(name: str, client: Client) -> None:
                results[name] = text_of(await client.call_tool("up__ask_name", {}))

            async with anyio.create_task_group() as tg:
                tg.start_soon(call, "Ada", ada)
                tg.start_soon(call, "Grace", grace)
    finally:
        server.stop()
    assert results == {"Ada": "hello Ada", "Grace": "hello Grace"}


async def test_an_upstream_question_is_declined_when_the_caller_cannot_answer() -> None:
    plane = _plane({"up": _stdio(mode="legacy")})
    async with Client(plane.sdk, mode="legacy") as client:  # declares no elicitation capability
        assert text_of(await client.call_tool("up__ask_name", {})) == "decline"


def _asked_client(plane: Plane, mode: str, logs: list[str]) -> Client:
    async def sample(context: ClientRequestContext, params: CreateMessageRequestParams) -> CreateMessageResult:
        text = params.messages[0].content
        prompt = text.text if isinstance(text, TextContent) else "?"
        return CreateMessageResult(
            role="assistant", content=TextContent(type="text", text=f"model: {prompt}"), model="m"
        )

    async def roots(context: ClientRequestContext) -> ListRootsResult:
        return ListRootsResult(roots=[Root(uri="file:///work", name="work")])

    async def log(params: LoggingMessageNotificationParams) -> None:
        logs.append(f"{params.level}:{params.data}")

    return Client(plane.sdk, mode=mode, sampling_callback=sample, list_roots_callback=roots, logging_callback=log)  # pyright: ignore[reportArgumentType]


async def _asks_and_logs(client: Client, logs: list[str]) -> None:
    assert text_of(await client.call_tool("up__ask_model", {"prompt": "hi"})) == "model: hi"
    assert text_of(await client.call_tool("up__roots_of_caller", {})) == "file:///work"
    assert text_of(await client.call_tool("up__chatty", {})) == "said"
    assert logs == ["info:an info line", "warning:a warning line"]
    logs.clear()
    await client.set_logging_level("warning")  # pyright: ignore[reportDeprecated]
    assert text_of(await client.call_tool("up__chatty", {})) == "said"
    assert logs == ["warning:a warning line"]


async def test_sampling_roots_and_log_messages_reach_the_caller_from_a_stdio_upstream() -> None:
    plane = _plane({"up": _stdio(mode="legacy")})
    logs: list[str] = []
    async with _asked_client(plane, "legacy", logs) as client:
        await _asks_and_logs(client, logs)


async def test_a_2025_caller_of_a_2026_http_upstream_is_served_on_a_session_of_its_own_era(tmp_path: Path) -> None:
    """``mode: auto`` over HTTP: the upstream speaks 2026-07-28, and a 2025-11-25 session beside it
    carries the 2025-11-25 callers' calls, so the upstream can ask them and log to them."""
    server = start_server(UPSTREAM_APP, tmp_path=tmp_path)
    try:
        plane = _plane({"up": {"endpoints": [{"url": server.url}]}})
        logs: list[str] = []
        async with _asked_client(plane, "legacy", logs) as client:
            (endpoint,) = Gateway.provider_of(plane).upstreams["up"].endpoints
            assert endpoint.sdk is not None
            assert endpoint.sdk.protocol_version == "2026-07-28"
            assert endpoint.legacy is not None
            assert endpoint.legacy.sdk.protocol_version == "2025-11-25"
            await _asks_and_logs(client, logs)
            lane = endpoint.legacy.lane
            assert lane is not None
            assert lane.served >= 4  # on the legacy link's lean lane, in the caller's task
        async with Client(plane.sdk, mode="2026-07-28") as modern:
            assert text_of(await modern.call_tool("up__era", {})) == "2026-07-28"
    finally:
        server.stop()


async def test_a_2026_upstreams_list_change_is_heard_at_once_on_its_listen_stream(tmp_path: Path) -> None:
    """A 2026-07-28 upstream has no session to notify: the endpoint keeps a ``subscriptions/listen``
    stream open, so the gateway re-lists at once rather than at the next health check."""
    server = start_server(UPSTREAM_APP, tmp_path=tmp_path)
    try:
        upstream = {"endpoints": [{"url": server.url}], "mode": "2026-07-28", "health_check": {"interval": "300s"}}
        plane = _plane({"up": upstream})
        async with Client(plane.sdk, mode="legacy") as client:
            assert text_of(await client.call_tool("up__sprout", {"name": "sprouted"})) == "sprouted"
            with anyio.fail_after(WAIT):
                while "up__sprouted" not in {tool.name for tool in (await client.list_tools()).tools}:  # noqa: ASYNC110
                    await anyio.sleep(0.05)  # the re-list, polled under the bound above
            assert text_of(await client.call_tool("up__sprouted", {})) == "sprouted"
    finally:
        server.stop()


async def test_an_upstream_resource_update_reaches_the_sessions_subscribed_through_the_gateway() -> None:
    plane = _plane({"up": _stdio(mode="legacy")})
    updated = anyio.Event()
    uris: list[str] = []

    async def on_message(message: Any) -> None:
        root = getattr(message, "root", message)
        if isinstance(root, ResourceUpdatedNotification):
            uris.append(str(root.params.uri))
            updated.set()

    async with Client(plane.sdk, mode="legacy", message_handler=on_message) as client:
        assert text_of(await client.call_tool("up__touch", {"uri": "test://note"})) == "nobody subscribed"
        await client.subscribe_resource("test://note")  # pyright: ignore[reportDeprecated]
        assert text_of(await client.call_tool("up__touch", {"uri": "test://note"})) == "touched"  # the upstream's own
        with anyio.fail_after(WAIT):
            await updated.wait()
        await client.unsubscribe_resource("test://note")  # pyright: ignore[reportDeprecated]
        assert text_of(await client.call_tool("up__touch", {"uri": "test://note"})) == "nobody subscribed"
    assert uris == ["test://note"]
