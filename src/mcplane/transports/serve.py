"""Running a Plane: stdio in this process, or HTTP/WebSocket under uvicorn on a pre-bound socket."""

from __future__ import annotations

import importlib.util
import logging
import signal
import socket
from typing import TYPE_CHECKING, Any

import anyio

from mcplane.errors import ConfigError

if TYPE_CHECKING:
    from mcplane.app import Plane

__all__ = ["bind_socket", "run", "serve_http", "serve_stdio_until_stopped"]

logger = logging.getLogger("mcplane.serve")


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind now, so a port in use is a clear error before anything starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _loopback(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")


def serve_http(plane: Plane, *, host: str, port: int, sock: socket.socket | None = None, **options: Any) -> None:
    import uvicorn

    from mcplane.transports.http import HTTPApp, HTTPOptions

    if not _loopback(host) and "allowed_hosts" not in options:
        # Bound to a routable address: the operator names the hosts; until then accept any Host,
        # but browsers' cross-site requests stay refused by the Origin check.
        options["allowed_hosts"] = ()
    app = HTTPApp(plane, HTTPOptions(**options))
    sock = sock or bind_socket(host, port)
    config = uvicorn.Config(
        app,
        lifespan="on",
        log_level="warning",
        ws_max_size=app.options.max_body_bytes,
        ws_ping_interval=app.options.ws_ping_interval,
        ws_ping_timeout=app.options.ws_ping_interval,
        timeout_graceful_shutdown=30,
        loop=_best_loop(),
        http=_best_http(),
    )
    server = uvicorn.Server(config)
    server.run(sockets=[sock])


def _best_loop() -> str:
    return "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"


def _best_http() -> str:
    return "httptools" if importlib.util.find_spec("httptools") is not None else "h11"


async def serve_stdio_until_stopped(plane: Plane) -> None:
    """Serve stdio until stdin closes or SIGTERM/SIGINT arrives; either way the lifespan closes.

    A client that stops a stdio server closes its stdin and, if it lingers, sends SIGTERM (the
    official SDK does so after two seconds): both end the serving loop the same orderly way.
    """
    from mcplane.transports.stdio import serve_stdio

    async with anyio.create_task_group() as tg:

        async def stop_on_signal() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    tg.cancel_scope.cancel()
                    return

        tg.start_soon(stop_on_signal)
        await serve_stdio(plane)
        tg.cancel_scope.cancel()


def run(plane: Plane, transport: str, *, host: str, port: int, **options: Any) -> None:
    if transport == "stdio":
        anyio.run(serve_stdio_until_stopped, plane)
    elif transport in ("http", "ws"):
        serve_http(plane, host=host, port=port, **options)
    else:
        raise ConfigError(f"unknown transport {transport!r}: expected stdio, http or ws")
