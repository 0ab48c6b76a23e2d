"""FastMCP's proxy in front of one upstream (the bench's echo Plane over Streamable HTTP).

Default: ``create_proxy(url)``, as FastMCP documents it: a fresh backend client (and session)
per request, its protocol era mirroring the front connection's. ``--reuse``: ``create_proxy``
of a ``Client(url)`` connected once at start, which FastMCP then reuses for every request (its
documented opt-in; it warns that concurrent requests share the session's context). Served like
``fastmcp_server.py``: ``run_http_async`` on uvloop + httptools.
"""

from __future__ import annotations

import contextlib

import uvloop
from _common import announce, bind_free_socket, parse_args
from fastmcp import Client
from fastmcp.server import create_proxy


async def serve(upstream: str, reuse: bool) -> None:
    sock = bind_free_socket()
    async with contextlib.AsyncExitStack() as stack:
        if reuse:
            client = await stack.enter_async_context(Client(upstream))
            proxy = create_proxy(client, name="bench-proxy")
        else:
            proxy = create_proxy(upstream, name="bench-proxy")
        announce(sock)
        await proxy.run_http_async(
            transport="http",
            show_banner=False,
            host="127.0.0.1",
            port=sock.getsockname()[1],
            log_level="WARNING",
            uvicorn_config={"http": "httptools", "access_log": False},
            sockets=[sock],
        )


def main() -> None:
    args = parse_args(("reuse",), {"upstream": ""})
    if not args.upstream:
        raise SystemExit("--upstream URL is required")
    uvloop.run(serve(args.upstream, args.reuse))


if __name__ == "__main__":
    main()
