"""The stdio transport in a real ``mcplane run`` process, fed raw lines."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream
from mcp.shared.message import SessionMessage
from mcp_types import JSONRPCResponse

from mcplane.transports.stdio import stdio_streams
from tests.conftest import E2E_APP, REPO_ROOT, mcplane_command, wire_error_of

TIMEOUT = 10
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


class Stdio:
    """Line-level access to a server's stdin and stdout."""

    def __init__(self, process: Process) -> None:
        assert process.stdin is not None
        assert process.stdout is not None
        self.process = process
        self._stdin = process.stdin
        self._stdout = BufferedByteReceiveStream(process.stdout)

    async def send_raw(self, data: bytes) -> None:
        await self._stdin.send(data)

    async def send(self, message: dict[str, Any]) -> None:
        await self.send_raw(json.dumps(message).encode() + b"\n")

    async def receive(self) -> dict[str, Any]:
        with anyio.fail_after(TIMEOUT):
            line = await self._stdout.receive_until(b"\n", 16 * 1024 * 1024)
        return json.loads(line)

    async def initialize(self) -> None:
        await self.send(INITIALIZE)
        answer = await self.receive()
        assert answer["id"] == 1
        assert "result" in answer
        await self.send(INITIALIZED)

    async def ping(self, request_id: int) -> None:
        await self.send({"jsonrpc": "2.0", "id": request_id, "method": "ping"})
        assert await self.receive() == {"jsonrpc": "2.0", "id": request_id, "result": {}}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_a_stop_signal_closes_the_lifespan_in_order(tmp_path: Path, sig: signal.Signals) -> None:
    log = tmp_path / "lifespan.log"
    env = {**os.environ, "MCPLANE_TEST_LIFESPAN_LOG": str(log)}
    process = await anyio.open_process(mcplane_command("run", str(E2E_APP)), cwd=REPO_ROOT, env=env, stderr=None)
    async with process:
        server = Stdio(process)
        await server.initialize()
        await server.ping(2)  # serving, so the lifespan is open
        assert log.read_text(encoding="utf-8").split() == ["open"]
        process.send_signal(sig)
        with anyio.fail_after(TIMEOUT):
            returncode = await process.wait()
    assert returncode == 0
    assert log.read_text(encoding="utf-8").split() == ["open", "close"]


@pytest.fixture
async def stdio() -> AsyncIterator[Stdio]:
    process = await anyio.open_process(mcplane_command("run", str(E2E_APP)), cwd=REPO_ROOT, stderr=None)
    try:
        yield Stdio(process)
    finally:
        await process.aclose()  # closes stdin: the server sees EOF and exits
        assert process.returncode == 0


async def test_garbage_line_gets_a_parse_error_and_the_next_request_works(stdio: Stdio) -> None:
    await stdio.send_raw(b"this is not json\n")
    error = await stdio.receive()
    assert error["id"] is None
    assert error["error"]["code"] == -32700
    await stdio.initialize()
    await stdio.ping(2)


async def test_non_jsonrpc_line_gets_invalid_request_with_its_id(stdio: Stdio) -> None:
    await stdio.send({"id": 7, "method": ["not", "a", "string"]})
    error = await stdio.receive()
    assert (error["id"], error["error"]["code"]) == (7, -32600)
    await stdio.initialize()


async def test_over_long_line_gets_an_error_and_the_stream_continues(stdio: Stdio) -> None:
    await stdio.initialize()
    await stdio.send_raw(
        b'{"jsonrpc": "2.0", "id": 3, "method": "ping", "params": {"pad": "' + b"x" * (5 * 1024 * 1024)
    )
    await stdio.send_raw(b'"}}\n')
    error = await stdio.receive()
    assert error["error"]["code"] == -32600
    assert error["error"]["message"] == "message too large"
    await stdio.ping(4)


async def test_blank_lines_are_ignored(stdio: Stdio) -> None:
    await stdio.send_raw(b"\n   \n\n")
    await stdio.initialize()
    await stdio.ping(2)


async def test_print_in_a_tool_does_not_corrupt_the_stream(stdio: Stdio) -> None:
    await stdio.initialize()
    await stdio.send({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "noisy", "arguments": {}}})
    answer = await stdio.receive()
    assert answer["id"] == 2
    assert answer["result"]["structuredContent"] == {"result": "ok"}
    await stdio.ping(3)


def test_requests_from_a_regular_file(tmp_path: Path) -> None:
    """``mcplane run app.py < requests.jsonl``: stdin is a file, not a pipe, and every request is answered."""
    requests = tmp_path / "requests.jsonl"
    call = {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "add", "arguments": {"a": 1, "b": 2}}}
    lines = [INITIALIZE, INITIALIZED, {"jsonrpc": "2.0", "id": 2, "method": "ping"}, call]
    requests.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    with requests.open("rb") as stdin:
        done = subprocess.run(
            mcplane_command("run", str(E2E_APP)), stdin=stdin, capture_output=True, cwd=REPO_ROOT, timeout=TIMEOUT * 2
        )
    assert done.returncode == 0, done.stderr.decode()
    answers = [json.loads(line) for line in done.stdout.splitlines()]
    assert [answer["id"] for answer in answers] == [1, 2, 3]
    assert answers[1] == {"jsonrpc": "2.0", "id": 2, "result": {}}
    assert answers[2]["result"]["structuredContent"] == {"result": 3}


async def test_requests_in_flight_when_stdin_closes_are_still_answered(stdio: Stdio) -> None:
    await stdio.initialize()
    await stdio.send({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "hang", "arguments": {}}})
    await stdio.send({"jsonrpc": "2.0", "id": 3, "method": "ping"})
    await stdio.process.stdin.aclose()  # type: ignore[union-attr]
    answers = {answer["id"]: answer for answer in [await stdio.receive(), await stdio.receive()]}
    assert answers[3] == {"jsonrpc": "2.0", "id": 3, "result": {}}
    assert wire_error_of(answers[2]["result"])["code"] == "timeout"
    with anyio.fail_after(TIMEOUT):
        assert await stdio.process.wait() == 0


async def test_queued_answers_are_written_even_when_the_caller_is_cancelled() -> None:
    """In process: an answer handed to the transport is not lost to a stop by cancellation (SIGTERM)."""
    stdin_read, stdin_write = os.pipe()
    stdout_read, stdout_write = os.pipe()
    answer = SessionMessage(JSONRPCResponse(jsonrpc="2.0", id=1, result={}))
    with os.fdopen(stdin_read, "rb", buffering=0) as stdin, os.fdopen(stdout_write, "wb", buffering=0) as stdout:
        with anyio.CancelScope() as scope:
            async with stdio_streams(stdin, stdout) as (_, write_stream):
                await write_stream.send(answer)
                scope.cancel()
                await anyio.sleep_forever()
        os.close(stdin_write)
    with os.fdopen(stdout_read, "rb") as written:
        assert written.read() == b'{"jsonrpc":"2.0","id":1,"result":{}}\n'
