"""The stream hot path engages only once the SDK has decided the connection's era."""

from __future__ import annotations

from typing import Any

import anyio
import orjson
from mcp_types import JSONRPCResponse

from mcplane import Plane
from mcplane.transports.stream_fast import StreamFastPath

META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}


def make_plane(release: anyio.Event | None = None) -> Plane:
    plane = Plane("streams")

    @plane.tool()
    async def echo(text: str) -> str:
        return text

    @plane.tool()
    async def wait() -> str:
        assert release is not None
        await release.wait()
        return "released"

    return plane


def call(request_id: int, name: str = "echo", meta: dict[str, Any] | None = None, **arguments: Any) -> dict[str, Any]:
    params: dict[str, Any] = {"name": name, "arguments": arguments}
    if meta is not None:
        params["_meta"] = meta
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


async def test_legacy_connection_after_handshake() -> None:
    plane = make_plane()
    written: list[dict[str, Any]] = []

    async def write(payload: bytes) -> None:
        written.append(orjson.loads(payload))

    hot = StreamFastPath(plane.fast, write)
    async with anyio.create_task_group() as tg:
        hot.bind(tg)
        initialize = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-11-25"}}
        assert not hot.offer(initialize)
        assert not hot.offer(call(1, text="before handshake"))
        hot.observe_outbound(JSONRPCResponse(jsonrpc="2.0", id=0, result={"protocolVersion": "2025-11-25"}))
        assert not hot.offer({"jsonrpc": "2.0", "method": "notifications/initialized"})
        assert not hot.offer(call(2, meta=META, text="modern envelope on a legacy connection"))
        assert hot.offer(call(3, text="hi"))
    assert written == [
        {
            "jsonrpc": "2.0",
            "id": 3,
            "result": {
                "content": [{"type": "text", "text": "hi"}],
                "structuredContent": {"result": "hi"},
                "isError": False,
            },
        }
    ]
    assert plane.fast.served == 1


async def test_modern_connection_after_its_opening_request() -> None:
    plane = make_plane()
    written: list[dict[str, Any]] = []

    async def write(payload: bytes) -> None:
        written.append(orjson.loads(payload))

    hot = StreamFastPath(plane.fast, write)
    async with anyio.create_task_group() as tg:
        hot.bind(tg)
        assert not hot.offer(call(1, meta=META, text="opening request goes to the SDK"))
        assert not hot.offer(call(2, text="no envelope"))
        assert not hot.offer(call(3, meta={**META, "progressToken": "p"}, text="progress"))
        assert hot.offer(call(4, meta=META, text="fast"))
    assert [w["id"] for w in written] == [4]
    assert written[0]["result"]["resultType"] == "complete"
    assert written[0]["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "streams"


def recording(plane: Plane) -> tuple[StreamFastPath, list[bytes], list[Any]]:
    """A hot path on ``plane`` that records what it writes and the ids of the calls it finished."""
    written: list[bytes] = []
    done: list[Any] = []

    async def write(payload: bytes) -> None:
        written.append(payload)

    hot = StreamFastPath(plane.fast, write)
    hot.on_done = done.append
    return hot, written, done


async def test_cancelled_hot_call_is_never_answered() -> None:
    release = anyio.Event()
    plane = make_plane(release)
    hot, written, done = recording(plane)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            hot.bind(tg)
            hot.offer(call(1, meta=META, text="opening"))
            assert hot.offer(call(7, "wait", meta=META))
            await anyio.wait_all_tasks_blocked()
            cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 7}}
            assert not hot.offer(cancel)  # the SDK sees it too
    assert written == []
    assert done == [7]


async def test_a_hot_call_cancelled_before_it_starts_never_runs() -> None:
    plane = make_plane()
    hot, written, done = recording(plane)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            hot.bind(tg)
            hot.offer(call(1, meta=META, text="opening"))
            assert hot.offer(call(8, meta=META, text="never"))
            assert not hot.offer({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 8}})
    assert written == []
    assert done == [8]
    assert plane.fast.served == 0


async def test_a_cancelled_hot_call_leaves_its_connection_serving() -> None:
    release = anyio.Event()
    plane = make_plane(release)
    written: list[dict[str, Any]] = []

    async def write(payload: bytes) -> None:
        written.append(orjson.loads(payload))

    hot = StreamFastPath(plane.fast, write)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            hot.bind(tg)
            hot.offer(call(1, meta=META, text="opening"))
            assert hot.offer(call(7, "wait", meta=META))
            await anyio.wait_all_tasks_blocked()
            assert not hot.offer({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 7}})
            await anyio.wait_all_tasks_blocked()
            assert hot.offer(call(9, meta=META, text="after"))
    assert [w["id"] for w in written] == [9]
