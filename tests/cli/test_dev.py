"""``mcplane dev``: a real process serving a file over HTTP, restarted when the file changes."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
import orjson
import pytest

from tests.conftest import free_port, mcplane_command

WAIT = 40.0
"""A restart takes a new interpreter's start-up (a second or two); generous for a loaded machine."""

SERVER = """
from mcplane import Plane

plane = Plane("dev-test")


@plane.tool()
def version() -> str:
    return "{version}"
"""


@dataclass
class Dev:
    proc: subprocess.Popen[bytes]
    port: int
    file: Path
    out: Path
    err: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def save(self, version: str) -> None:
        self.file.write_text(SERVER.format(version=version), encoding="utf-8")


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[Dev]:
    folder = tmp_path / "app"
    folder.mkdir()
    port = free_port()
    running = Dev(None, port, folder / "server.py", tmp_path / "dev.out", tmp_path / "dev.err")  # type: ignore[arg-type]
    running.save("v1")
    with running.out.open("wb") as out, running.err.open("wb") as err:
        running.proc = subprocess.Popen(
            mcplane_command("dev", str(running.file), "--port", str(port), "--interval", "0.1"),
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )
    try:
        yield running
    finally:
        if running.proc.poll() is None:
            running.proc.kill()
            running.proc.wait(timeout=10)


async def _version(http: httpx.AsyncClient, url: str) -> str | None:
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {
            "name": "version",
            "arguments": {},
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
            },
        },
    }
    headers = {
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2026-07-28",
        "Mcp-Method": "tools/call",
        "Mcp-Name": "version",
    }
    try:
        response = await http.post(url, json=body, headers=headers)
    except httpx.TransportError:
        return None  # between two servers
    if response.status_code != 200:
        return None
    result = orjson.loads(response.content).get("result") or {}
    return (result.get("structuredContent") or {}).get("result")


async def _wait_for(dev: Dev, version: str) -> None:
    with anyio.fail_after(WAIT):
        async with httpx.AsyncClient(timeout=5.0) as http:
            while await _version(http, dev.url) != version:
                assert dev.proc.poll() is None, dev.err.read_text()
                await anyio.sleep(0.05)


async def _wait_for_text(path: Path, text: str, proc: subprocess.Popen[bytes]) -> None:
    with anyio.fail_after(WAIT):
        while text not in await anyio.Path(path).read_text(encoding="utf-8", errors="replace"):
            assert proc.poll() is None
            await anyio.sleep(0.05)


async def test_dev_serves_the_file_and_reloads_it_on_change(dev: Dev) -> None:
    await _wait_for(dev, "v1")
    printed = dev.out.read_text()
    assert f"serving {dev.file} at {dev.url}" in printed
    assert f"npx @modelcontextprotocol/inspector    (transport: Streamable HTTP, URL: {dev.url})" in printed
    assert f"npx @modelcontextprotocol/inspector --cli {dev.url} --transport http --method tools/list" in printed

    dev.save("v2")
    await _wait_for(dev, "v2")

    # A mistake saved is reported; the next save serves again.
    dev.file.write_text("def broken(:\n", encoding="utf-8")
    await _wait_for_text(dev.err, "waiting for a change to start it again", dev.proc)
    assert "SyntaxError" in dev.err.read_text()
    dev.save("v3")
    await _wait_for(dev, "v3")

    # A new file next to it counts as a change too.
    (dev.file.parent / "helper.py").write_text("X = 1\n")
    await _wait_for_text(dev.err, "files changed: helper.py; restarting", dev.proc)
    await _wait_for(dev, "v3")

    child = _last_child_pid(dev.err)
    dev.proc.send_signal(signal.SIGTERM)
    assert dev.proc.wait(timeout=WAIT) == 0
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)  # the server it ran is gone with it


def _last_child_pid(stderr: Path) -> int:
    pids = [
        event["pid"]
        for line in stderr.read_text().splitlines()
        if line.startswith("{") and (event := orjson.loads(line)).get("event") == "start"
    ]
    assert pids
    return pids[-1]


def test_dev_with_a_missing_file_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        mcplane_command("dev", str(tmp_path / "absent.py")), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert done.stderr.strip() == f"mcplane: error: no such file: {tmp_path / 'absent.py'}"
