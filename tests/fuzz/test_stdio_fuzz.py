"""The stdio transport under fuzzed lines: any bytes, invalid UTF-8, deep nesting, oversized lines.
Every line the server writes is a JSON-RPC message; after each fuzzed line a normal ``tools/call``
on the same stream is answered correctly (stdio has one client: the stream itself must survive).
One long-lived ``mcplane run`` subprocess for the module."""

from __future__ import annotations

import itertools
import queue
import subprocess
import threading
from collections.abc import Callable, Iterator
from typing import IO, Any

import orjson
import pytest
from hypothesis import given

from tests.conftest import REPO_ROOT, mcplane_command
from tests.fuzz.payloads import ENVELOPE, FUZZ_SETTINGS, check_jsonrpc_message, check_no_trace, payloads, server_errors

APP = REPO_ROOT / "deploy" / "testbed" / "app.py"
MAX_LINE = 4 * 1024 * 1024
WAIT = 30.0
"""A hang fails the example (generous on a loaded machine; a healthy answer takes milliseconds)."""

counter = itertools.count(1)


class StdioServer:
    def __init__(self, stderr: IO[bytes]) -> None:
        self.proc = subprocess.Popen(
            mcplane_command("run", str(APP)),
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
        self.lines: queue.Queue[bytes] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(b"")  # end of output

    def write(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def until(self, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The first message ``wanted`` accepts; every line before it must be a JSON-RPC message too
        (late answers to earlier examples, e.g. a fuzzed ``slow_report``, may come first)."""
        while True:
            try:
                line = self.lines.get(timeout=WAIT)
            except queue.Empty:
                raise AssertionError(f"no answer within {WAIT:g} s: the server hangs") from None
            assert line, f"the server closed its output (exit {self.proc.poll()})"
            check_no_trace(line)
            message = orjson.loads(line)
            check_jsonrpc_message(message)
            if wanted(message):
                return message

    def call(self, text: str) -> None:
        """A normal call, answered correctly."""
        n = f"normal-{next(counter)}"
        params = {"name": "echo", "arguments": {"text": text}, "_meta": ENVELOPE}
        self.write(orjson.dumps({"jsonrpc": "2.0", "id": n, "method": "tools/call", "params": params}) + b"\n")
        message = self.until(lambda m: m.get("id") == n)
        assert message["result"]["structuredContent"] == {"result": text}, message


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StdioServer]:
    log_path = tmp_path_factory.mktemp("fuzz-stdio") / "server.stderr"
    with log_path.open("wb") as log:
        server = StdioServer(log)
        server.call("first")  # a 2026-07-28 request first: the stream serves that era from now on
        yield server
        alive = server.proc.poll() is None
        assert server.proc.stdin is not None
        server.proc.stdin.close()
        code = server.proc.wait(timeout=WAIT)
        server.reader.join(timeout=WAIT)
        assert server.proc.stdout is not None
        server.proc.stdout.close()
    stderr = log_path.read_text(errors="replace")
    assert alive, "the server died during the fuzzing:\n" + stderr[-3000:]
    assert code == 0, stderr[-3000:]
    assert not server_errors(stderr), server_errors(stderr)


@FUZZ_SETTINGS
@given(payload=payloads)
def test_fuzzed_lines(server: StdioServer, payload: bytes) -> None:
    server.write(payload + b"\n")
    server.call(f"after {len(payload)} bytes")


@pytest.mark.parametrize("size", [MAX_LINE + 1, 2 * MAX_LINE])
def test_oversized_lines_get_an_error_and_the_stream_goes_on(server: StdioServer, size: int) -> None:
    server.write(b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":"' + b"x" * size + b'"}}\n')
    error = server.until(lambda m: m.get("id") is None and "error" in m)
    assert error["error"]["message"] == "message too large"
    assert error["error"]["data"]["code"] == "invalid_request"
    server.call("after an oversized line")


def test_a_line_split_across_writes_is_one_message(server: StdioServer) -> None:
    params = {"name": "echo", "arguments": {"text": "split"}, "_meta": ENVELOPE}
    line = orjson.dumps({"jsonrpc": "2.0", "id": "split", "method": "tools/call", "params": params})
    for byte in line:  # one byte per write: a slow client on a pipe
        server.write(bytes([byte]))
    server.write(b"\n")
    answer = server.until(lambda m: m.get("id") == "split")
    assert answer["result"]["structuredContent"] == {"result": "split"}
