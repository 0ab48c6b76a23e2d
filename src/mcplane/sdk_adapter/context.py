"""What mcplane reads of the SDK's ``Context`` that the SDK keeps private.

``Context.request_context`` raises outside a request; the gateway's relay and forwarding and
the authentication slot need to ask "is there one?" instead, and ``ctx.state`` needs the server
a context belongs to.
"""

from __future__ import annotations

from typing import Any

from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import Context

__all__ = ["request_context_of", "server_of"]


def request_context_of(ctx: Context[Any, Any]) -> ServerRequestContext[Any, Any] | None:
    """The SDK request context ``ctx`` was made for, or ``None`` (a call made outside a request)."""
    return ctx._request_context  # pyright: ignore[reportPrivateUsage]


def server_of(ctx: Context[Any, Any]) -> Any:
    """The ``MCPServer`` ``ctx`` belongs to, or ``None``."""
    return ctx._mcp_server  # pyright: ignore[reportPrivateUsage]
