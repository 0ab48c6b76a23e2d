"""The floor: raw Starlette + uvicorn + orjson answering a tools/call-shaped result (no MCP at all).

Over HTTP it is one Starlette route; over stdio a plain asyncio line loop. It answers
``initialize`` (with an ``Mcp-Session-Id`` over HTTP), acknowledges notifications, and echoes
``params.arguments.text`` for ``tools/call``; ``server/discover`` gets a minimal result.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import orjson
from _common import parse_args, serve_uvicorn

INIT_RESULT = {
    "protocolVersion": "2025-11-25",
    "capabilities": {"tools": {}},
    "serverInfo": {"name": "floor", "version": "0"},
}
DISCOVER_RESULT = {
    "supportedVersions": ["2026-07-28"],
    "capabilities": {"tools": {}},
    "resultType": "complete",
    "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "floor", "version": "0"}},
}


def answer(message: dict[str, Any]) -> dict[str, Any] | None:
    if "id" not in message:
        return None
    method = message.get("method")
    if method == "initialize":
        result: dict[str, Any] = INIT_RESULT
    elif method == "server/discover":
        result = DISCOVER_RESULT
    else:
        text = message["params"]["arguments"]["text"]
        result = {"content": [{"type": "text", "text": text}], "isError": False}
    return {"jsonrpc": "2.0", "id": message["id"], "result": result}


def http_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def mcp(request: Request) -> Response:
        message = orjson.loads(await request.body())
        reply = answer(message)
        if reply is None:
            return Response(status_code=202)
        headers = {"mcp-session-id": "floor"} if message.get("method") == "initialize" else None
        return Response(orjson.dumps(reply), media_type="application/json", headers=headers)

    return Starlette(routes=[Route("/mcp", mcp, methods=["POST"])])


async def serve_stdio() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=4 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    while line := await reader.readline():
        reply = answer(orjson.loads(line))
        if reply is not None:
            out.write(orjson.dumps(reply) + b"\n")


def main() -> None:
    args = parse_args()
    if args.transport == "stdio":
        asyncio.run(serve_stdio())
        return
    serve_uvicorn(http_app())


if __name__ == "__main__":
    main()
