"""The official TypeScript SDK client logs in through mcplane's authorization server and calls a tool."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from pathlib import Path

import anyio
from anyio.abc import ByteReceiveStream

from tests.conftest import REPO_ROOT
from tests.interop.conftest import NODE22, node_env, require
from tests.oauth.server.conftest import Browser, Plant

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "ts_oauth_client.mjs"
TS_SDK = REPO_ROOT / ".tools" / "interop" / "ts" / "node_modules"
REDIRECT_URI = "http://127.0.0.1:9/callback"


async def test_the_typescript_sdk_client_logs_in(authorization_server: Plant) -> None:
    node = require(NODE22, "Node 22")
    modules = require(TS_SDK, "the TypeScript SDK")
    browser = Browser(authorization_server.idp)
    command = [str(node), str(DRIVER), str(modules), authorization_server.server.url, REDIRECT_URI]
    try:
        with anyio.fail_after(60):
            async with await anyio.open_process(command, cwd=REPO_ROOT, env=node_env(), stderr=None) as process:
                assert process.stdout is not None
                assert process.stdin is not None
                lines = _lines(process.stdout)
                first = json.loads(await anext(lines))
                final = await browser.authorize(first["authorize"])
                await process.stdin.send(final.encode() + b"\n")
                answer = json.loads(await anext(lines))
                assert await process.wait() == 0
    finally:
        await browser.aclose()
    assert answer["result"] == "alice roles=['admin'] scopes=['tools.read', 'tools.write']"
    log = authorization_server.server.stderr()
    assert answer["tokens"]["access"] not in log
    assert answer["tokens"]["refresh"] not in log


async def _lines(stream: ByteReceiveStream) -> AsyncGenerator[str]:
    buffer = b""
    async for chunk in stream:
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            yield line.decode()
