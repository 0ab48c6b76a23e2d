"""FastMCP with one ``echo`` tool, run through its own ``run(transport="http")`` entry point."""

from __future__ import annotations

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
    mcp.run(
        transport="http",
        show_banner=False,
        host="127.0.0.1",
        port=sock.getsockname()[1],
        log_level="WARNING",
        json_response=args.json or None,
        stateless_http=args.stateless or None,
        uvicorn_config={"loop": "uvloop", "http": "httptools", "access_log": False},
        sockets=[sock],
    )


if __name__ == "__main__":
    main()
