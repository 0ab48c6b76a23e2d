"""What passes through the gateway untouched, against the conformance server as upstream: tasks,
multi-round-trip input (passed on to 2026-07-28 callers, answered with 2025-11-25 callers' help),
and what the hot path does with an upstream that asks a caller who declared nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from mcp.client.session import ClientRequestContext
from mcp_types import ElicitRequestParams, ElicitResult

from mcplane import Plane
from mcplane.context import Principal
from mcplane.gateway import Gateway
from mcplane.gateway.tasks import UpstreamTasks
from mcplane.transports.http import HTTPApp, HTTPOptions
from tests.conftest import REPO_ROOT, ServerProcess, start_server
from tests.gateway.conftest import text_of
from tests.tasks.conftest import connect
from tests.test_fastpath import body_of, modern_call, modern_headers

CONFORMANCE = REPO_ROOT / "examples" / "conformance" / "server.py"
WAIT = 20.0


@pytest.fixture(scope="module")
def conformance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server(CONFORMANCE, tmp_path=tmp_path_factory.mktemp("conformance-upstream"))
    yield server
    server.stop()


def _gateway(server: ServerProcess, **options: Any) -> Plane:
    upstream = {"endpoints": [{"url": server.url}], "namespace": False, **options}
    return Gateway.from_config({"server": {"default_timeout": "20s"}, "upstreams": {"up": upstream}})


async def _answer(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
    properties: Any = (getattr(params, "requested_schema", None) or {}).get("properties") or {}
    content = {"name": "Ada", "color": "blue", "ok": True, "context": "tests"}
    return ElicitResult(action="accept", content={key: value for key, value in content.items() if key in properties})


# ----------------------------------------------------------------- tasks
async def test_an_upstream_task_is_created_read_and_cancelled_through_the_gateway(conformance: ServerProcess) -> None:
    plane = _gateway(conformance)
    async with connect(plane) as tasks:  # a 2026-07-28 client that declared the tasks extension
        created = await tasks.call("slow_compute", {"seconds": 0.01, "label": "quick"})
        assert created.result_type == "task"
        with anyio.fail_after(WAIT):
            while (done := await tasks.get(created.task_id))["status"] != "completed":  # noqa: ASYNC110
                await anyio.sleep(0.05)  # polling the task as a client does, under the bound above
        assert done["result"]["content"][0]["text"] == "computed quick in 0.01s"
        assert done["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "mcplane-gateway"  # not the upstream's

        slow = await tasks.call("slow_compute", {"seconds": 30})
        assert (await tasks.get(slow.task_id))["status"] == "working"
        await tasks.cancel(slow.task_id)
        assert (await tasks.get(slow.task_id))["status"] == "cancelled"
    async with connect(plane, tasks=False) as plain:  # without the extension: the upstream refuses (-32021)
        with pytest.raises(Exception, match="tasks") as refused:
            await plain.call("failing_job", {})
        assert getattr(refused.value, "code", None) == -32021


def test_an_upstream_task_is_visible_to_its_creator_only() -> None:
    tasks = UpstreamTasks()
    upstream, endpoint = SimpleNamespace(name="up"), SimpleNamespace(index=0)
    tasks.created({"taskId": "t1"}, upstream, endpoint, SimpleNamespace(principal=Principal("ada")))  # pyright: ignore[reportArgumentType]
    assert "t1" in tasks
    route = tasks.route("t1", Principal("ada"))
    assert route is not None
    assert (route.upstream, route.endpoint) == ("up", 0)
    assert tasks.route("t1", Principal("grace")) is None
    assert tasks.route("t1", Principal("ada", tenant="other")) is None


# ----------------------------------------------------------------- multi-round-trip input
async def test_a_2026_caller_gets_the_upstreams_input_rounds_and_answers_them(conformance: ServerProcess) -> None:
    plane = _gateway(conformance)
    async with Client(plane.sdk, mode="2026-07-28", elicitation_callback=_answer) as client:
        # The SDK client answers each round; the gateway seals the upstream's request state and unseals it back.
        assert text_of(await client.call_tool("test_input_required_result_elicitation", {})) == "Hello, Ada!"
        assert text_of(await client.call_tool("test_input_required_result_multi_round", {})) == "Ada likes blue"
        assert text_of(await client.call_tool("test_input_required_result_request_state", {})) == "state-ok: confirmed"


async def test_a_2025_caller_answers_a_2026_only_upstreams_rounds_through_the_gateway(
    conformance: ServerProcess,
) -> None:
    plane = _gateway(conformance, mode="2026-07-28")  # one stateless link: no 2025-11-25 session to the upstream
    async with Client(plane.sdk, mode="legacy", elicitation_callback=_answer) as client:
        assert text_of(await client.call_tool("test_input_required_result_elicitation", {})) == "Hello, Ada!"
        assert text_of(await client.call_tool("test_input_required_result_multi_round", {})) == "Ada likes blue"
    async with Client(plane.sdk, mode="legacy") as mute:  # cannot be asked: the gateway declines for it
        declined = await mute.call_tool("test_input_required_result_elicitation", {})
        assert declined.is_error


async def test_the_hot_path_refuses_an_upstream_round_the_caller_cannot_answer(
    conformance: ServerProcess, tmp_path: Path
) -> None:
    plane = _gateway(conformance)
    app = HTTPApp(plane, HTTPOptions())
    name = "test_input_required_result_elicitation"
    async with app.running():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            mute = body_of(await http.post("/mcp", json=modern_call(name, {}), headers=modern_headers(name)))
            assert plane.fast.served == 1
            asking = modern_call(name, {})
            asking["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"] = {"elicitation": {}}
            asked = body_of(await http.post("/mcp", json=asking, headers=modern_headers(name)))
            assert plane.fast.served == 1  # a caller that can be asked takes the SDK path
    assert mute["error"]["code"] == -32021
    assert mute["error"]["data"] == {"requiredCapabilities": {"elicitation": {}}}
    assert asked["result"]["resultType"] == "input_required"
    assert set(asked["result"]["inputRequests"]) == {"user_name"}
