"""stdio transport: newline-delimited JSON-RPC over the process's stdin and stdout.

While serving, file descriptor 1 points at stderr so a stray ``print`` in a tool cannot corrupt
the protocol stream; the protocol writes to a private duplicate of the original stdout. A line
that is not a JSON-RPC message gets an error answer instead of being dropped.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import IO, Any

import anyio
from mcp.shared._context_streams import create_context_streams
from mcp.shared.message import SessionMessage

from mcplane.transports.framing import decode_frame, encode_message, error_frame

__all__ = ["serve_stdio", "stdio_streams"]

MAX_LINE_BYTES = 4 * 1024 * 1024


@asynccontextmanager
async def stdio_streams(
    stdin: IO[bytes] | None = None, stdout: IO[bytes] | None = None, *, max_line_bytes: int = MAX_LINE_BYTES
) -> AsyncIterator[tuple[Any, Any]]:
    """Yield ``(read_stream, write_stream)`` of SessionMessages over binary stdin/stdout."""
    restore: int | None = None
    if stdout is None:
        sys.stdout.flush()
        private = os.dup(1)
        restore = os.dup(1)
        os.dup2(2, 1)
        stdout = os.fdopen(private, "wb", buffering=0)
    if stdin is None:
        stdin = sys.stdin.buffer
    lines = await _line_reader(stdin, max_line_bytes)
    out = stdout
    read_writer, read_stream = create_context_streams[SessionMessage | Exception](32)
    write_stream, write_reader = create_context_streams[SessionMessage](32)

    def write_line(text: str) -> None:
        # Pipes to a client are written whole and fast; a blocking write here is what the
        # official SDK's thread-hop write costs without the hop.
        out.write(text.encode() + b"\n")

    async def reader() -> None:
        async with read_writer:
            while True:
                try:
                    line = await lines.readuntil(b"\n")
                except asyncio.IncompleteReadError as exc:
                    line = exc.partial
                    if not line.strip():
                        return
                except asyncio.LimitOverrunError:
                    await _discard_line(lines)
                    write_line(error_frame(None, -32600, "message too large", "invalid_request"))
                    continue
                if not line.strip():
                    continue
                decoded = decode_frame(line)
                if isinstance(decoded, str):
                    write_line(decoded)
                else:
                    await read_writer.send(decoded)

    async def writer() -> None:
        async with write_reader:
            async for message in write_reader:
                write_line(encode_message(message))

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            tg.start_soon(writer)
            try:
                yield read_stream, write_stream
            finally:
                tg.cancel_scope.cancel()
    finally:
        if restore is not None:
            os.dup2(restore, 1)
            os.close(restore)


async def _line_reader(stdin: IO[bytes], limit: int) -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader, loop=loop), stdin)
    return reader


async def _discard_line(reader: asyncio.StreamReader) -> None:
    """Drop the rest of an over-long line: everything up to and including the next newline."""
    while True:
        try:
            await reader.readuntil(b"\n")
            return
        except asyncio.LimitOverrunError as exc:
            await reader.readexactly(exc.consumed)
        except asyncio.IncompleteReadError:
            return


async def serve_stdio(plane: Any) -> None:
    """Serve a Plane over stdio until stdin closes."""
    lowlevel = plane.sdk._lowlevel_server
    async with stdio_streams() as (read_stream, write_stream):
        await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())
