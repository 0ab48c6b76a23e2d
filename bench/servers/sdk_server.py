"""The official SDK's ``MCPServer`` with one ``echo`` tool.

Default: ``streamable_http_app()`` as shipped (stateful sessions, SSE responses).
``--stateless --json``: the SDK's fastest documented configuration.
"""

from __future__ import annotations

from _common import parse_args, serve_uvicorn
from mcp.server.mcpserver import MCPServer

server = MCPServer("bench", log_level="WARNING")


@server.tool()
async def echo(text: str) -> str:
    """Echo the text back."""
    return text


def main() -> None:
    args = parse_args(("json", "stateless"))
    if args.transport == "stdio":
        server.run("stdio")
        return
    app = server.streamable_http_app(json_response=args.json, stateless_http=args.stateless, host="127.0.0.1")
    serve_uvicorn(app)


if __name__ == "__main__":
    main()
