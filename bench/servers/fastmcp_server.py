"""FastMCP with one ``echo`` tool, served through its own ``run_http_async`` entry point.

``FastMCP.run()`` drives uvicorn inside ``anyio.run`` (plain asyncio, whatever uvicorn's ``loop``
setting says); the bench runs the same coroutine on uvloop so every server gets uvloop + httptools.
"""

from __future__ import annotations

import uvloop
from _common import announce, bind_free_socket, parse_args
from fastmcp import FastMCP

mcp = FastMCP("bench")


@mcp.tool()
async def echo(text: str) -> str:
    """Echo the text back."""
    return text


def main() -> None:
    args = parse_args(("json", "stateless"))
    if args.transport == "stdio":
        mcp.run(transport="stdio", show_banner=False, log_level="WARNING")
        return
    sock = bind_free_socket()
    announce(sock)
    uvloop.run(
        mcp.run_http_async(
            transport="http",
            show_banner=False,
            host="127.0.0.1",
            port=sock.getsockname()[1],
            log_level="WARNING",
            json_response=args.json or None,
            stateless_http=args.stateless or None,
            uvicorn_config={"http": "httptools", "access_log": False},
            sockets=[sock],
        )
    )


if __name__ == "__main__":
    main()
