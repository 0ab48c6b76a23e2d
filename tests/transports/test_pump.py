"""The stream pump routes each frame: an error answer, the hot path, or the SDK server's stream."""

from __future__ import annotations

from typing import Any

import anyio
import orjson
import pytest
from mcp.shared.message import ServerMessageMetadata, SessionMessage
from mcp_types import JSONRPCRequest, JSONRPCResponse

from mcplane import Plane
from mcplane.transports.pump import StreamPump

META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}


def make_plane() -> Plane:
    plane = Plane("pump")

    @plane.tool()
    async def echo(text: str) -> str:
        return text

    return plane


class Frames:
    """A connection's two ends in memory: frames to read, frames written."""

    def __init__(self, *frames: str | bytes) -> None:
        self.pending = list(frames)
        self.written: list[Any] = []
        self.wrote = anyio.Event()

    async def read(self) -> str | bytes | None:
        return self.pending.pop(0) if self.pending else None

    async def write(self, text: str) -> None:
        self.written.append(orjson.loads(text))
        self.wrote.set()

    async def write_bytes(self, payload: bytes) -> None:
        await self.write(payload.decode())


def close(pump: StreamPump) -> None:
    """Close every end of the pump's streams (a transport closes them as the connection ends)."""
    for stream in (pump.read_writer, pump.read_stream, pump.write_stream, pump.write_reader):
        stream.close()


async def test_frames_that_are_not_messages_are_answered_and_reading_goes_on() -> None:
    frames = Frames("{not json", "[1, 2]", '{"id": 7, "method": 3}')
    pump = StreamPump(frames.write, frames.write_bytes)
    with anyio.fail_after(5):
        await pump.read_all(frames.read)
        with pytest.raises(anyio.EndOfStream):  # the input ended: so does the server's
            await pump.read_stream.receive()
    close(pump)
    assert [(answer["id"], answer["error"]["code"]) for answer in frames.written] == [
        (None, -32700),
        (None, -32600),
        (7, -32600),
    ]
    assert not pump.unanswered.pending


async def test_a_request_reaches_the_server_with_its_request_context_and_is_owed_an_answer() -> None:
    request = {"jsonrpc": "2.0", "id": "r-1", "method": "tools/list"}
    frames = Frames(orjson.dumps(request))
    handshake = object()
    pump = StreamPump(frames.write, frames.write_bytes, request_context=handshake)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(pump.read_all, frames.read)
            message = await pump.read_stream.receive()
            assert isinstance(message, SessionMessage)
            assert isinstance(message.message, JSONRPCRequest)
            assert isinstance(message.metadata, ServerMessageMetadata)
            assert message.metadata.request_context is handshake
            assert pump.unanswered.pending
            tg.start_soon(pump.write_all)
            await pump.write_stream.send(SessionMessage(JSONRPCResponse(jsonrpc="2.0", id="r-1", result={})))
            await frames.wrote.wait()
            await pump.write_stream.aclose()
    close(pump)
    assert frames.written == [{"jsonrpc": "2.0", "id": "r-1", "result": {}}]
    assert not pump.unanswered.pending


async def test_a_plain_tool_call_is_answered_on_the_hot_path_without_the_server() -> None:
    plane = make_plane()
    opening = {"jsonrpc": "2.0", "id": 0, "method": "tools/list", "params": {"_meta": META}}
    call = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": "hi"}, "_meta": META},
    }
    frames = Frames(orjson.dumps(opening), orjson.dumps(call))
    pump = StreamPump(frames.write, frames.write_bytes, fast=plane.fast)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            pump.bind(tg)
            tg.start_soon(pump.read_all, frames.read)
            first = await pump.read_stream.receive()  # the opening request decides the era: the server's
            assert isinstance(first, SessionMessage)
            assert isinstance(first.message, JSONRPCRequest)
            assert first.message.id == 0
            await frames.wrote.wait()
    close(pump)
    assert [answer["id"] for answer in frames.written] == [1]
    assert frames.written[0]["result"]["content"][0]["text"] == "hi"
    assert pump.unanswered.pending, "the opening request still waits for the server's answer"
