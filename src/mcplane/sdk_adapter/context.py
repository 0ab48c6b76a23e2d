"""What mcplane reads of the SDK's ``Context`` that the SDK keeps private.

``Context.request_context`` raises outside a request; the gateway's relay and forwarding and
the authentication slot need to ask "is there one?" instead, and ``ctx.state`` needs the server
a context belongs to.

The SDK's ``Context`` is a pydantic model whose request state lives in four private attributes;
building one through its ``__init__`` runs pydantic validation (a wrap validator, private
attribute defaults) and four ``__setattr__`` calls, and reading a private attribute goes through
pydantic's ``__getattr__`` fallback. :func:`private_state` and :func:`request_context_of` read
and write the same state directly (``tests/sdk_compat/test_context.py`` compares them with the
SDK's own constructor).
"""

from __future__ import annotations

from typing import Any

from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import Context

__all__ = ["PRIVATE_NAMES", "input_params_of", "private_state", "request_context_of", "server_of"]

PRIVATE_NAMES = ("_request_context", "_mcp_server", "_input_params", "_subscriptions")
"""The private attributes the SDK's ``Context.__init__`` sets, in its order."""


def private_state(request_context: Any, mcp_server: Any, input_params: Any, subscriptions: Any) -> dict[str, Any]:
    """The ``__pydantic_private__`` dict the SDK's ``Context(...)`` would hold for these arguments."""
    return {
        "_request_context": request_context,
        "_mcp_server": mcp_server,
        "_input_params": input_params,
        "_subscriptions": subscriptions,
    }


def request_context_of(ctx: Context[Any, Any]) -> ServerRequestContext[Any, Any] | None:
    """The SDK request context ``ctx`` was made for, or ``None`` (a call made outside a request)."""
    private = ctx.__pydantic_private__
    if private is None:
        return None
    return private.get("_request_context")


def input_params_of(ctx: Context[Any, Any]) -> Any:
    """The request params ``ctx`` was made with (``None`` when none), as ``ctx._input_params`` reads
    them, without pydantic's ``__getattr__`` fallback (3 us a read)."""
    private = ctx.__pydantic_private__
    if private is None:
        return None
    return private.get("_input_params")


def server_of(ctx: Context[Any, Any]) -> Any:
    """The ``MCPServer`` ``ctx`` belongs to, or ``None``."""
    private = getattr(ctx, "__pydantic_private__", None)
    if not isinstance(private, dict):
        return None
    return private.get("_mcp_server")  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
