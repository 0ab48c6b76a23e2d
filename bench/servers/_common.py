"""Shared plumbing for the bench servers: argument parsing, a pre-bound free port, uvicorn.

Every HTTP server binds ``127.0.0.1:0`` itself (so the port is free by construction), prints
``LISTENING <port>`` on stdout and then serves under uvicorn with uvloop + httptools at log
level warning. The runner reads the port and polls a real ``tools/call`` until it answers.
"""

from __future__ import annotations

import argparse
import socket
import sys
from typing import Any


def parse_args(extra: tuple[str, ...] = (), options: dict[str, str] | None = None) -> argparse.Namespace:
    """``extra``: boolean flags; ``options``: string options with their defaults."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--transport", choices=("http", "stdio"), default="http")
    for flag in extra:
        parser.add_argument(f"--{flag}", action="store_true")
    for name, default in (options or {}).items():
        parser.add_argument(f"--{name}", default=default)
    return parser.parse_args()


def bind_free_socket() -> socket.socket:
    # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets whose proto is
    # IPPROTO_TCP, and a proto-0 listener makes every keep-alive response wait ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def announce(sock: socket.socket) -> None:
    sys.stdout.write(f"LISTENING {sock.getsockname()[1]}\n")
    sys.stdout.flush()


def serve_uvicorn(app: Any, **config: Any) -> None:
    import uvicorn

    sock = bind_free_socket()
    settings: dict[str, Any] = {
        "lifespan": "on",
        "log_level": "warning",
        "loop": "uvloop",
        "http": "httptools",
        "access_log": False,
    }
    settings.update(config)
    server = uvicorn.Server(uvicorn.Config(app, **settings))
    announce(sock)
    server.run(sockets=[sock])
