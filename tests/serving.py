"""An ASGI app served by a real uvicorn on a loopback socket for the length of a block.

The server says when it listens (an event, not a polling loop); the socket is bound before the
server starts, so a test may learn its URL first (an issuer that must name itself in its config).
"""

from __future__ import annotations

import socket
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from typing import Any, Literal

import anyio
import uvicorn
from starlette.types import ASGIApp

START_TIMEOUT = 20.0


class ReadyServer(uvicorn.Server):
    """uvicorn with a ``ready`` event, set once it listens."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = anyio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


def loopback_socket() -> tuple[socket.socket, str]:
    """A socket bound to a free loopback port, and its ``http://`` base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}"


@asynccontextmanager
async def serve_on(
    sock: socket.socket,
    app: ASGIApp,
    *,
    lifespan: Literal["on", "off"] = "off",
    force_exit: bool = False,
    http: Any = "auto",
) -> AsyncGenerator[None]:
    """Serve ``app`` on ``sock`` (closed afterwards) until the block ends (``http``: uvicorn's protocol)."""
    server = ReadyServer(uvicorn.Config(app, lifespan=lifespan, log_level="warning", http=http))
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            with anyio.fail_after(START_TIMEOUT):
                await server.ready.wait()
            try:
                yield
            finally:
                server.should_exit = True
                server.force_exit = force_exit
    finally:
        sock.close()


@asynccontextmanager
async def serving(
    app: ASGIApp, *, lifespan: Literal["on", "off"] = "off", force_exit: bool = False, http: Any = "auto"
) -> AsyncGenerator[str]:
    """``app`` served on a free loopback port for the block; yields its base URL."""
    sock, base = loopback_socket()
    async with serve_on(sock, app, lifespan=lifespan, force_exit=force_exit, http=http):
        yield base
