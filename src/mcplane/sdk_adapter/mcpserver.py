"""What mcplane reads and changes of an ``MCPServer`` that the SDK keeps private.

The SDK's high-level server holds its low-level server (request handlers, name, ``serverInfo``
stamp), its tool, prompt and resource managers and its subscription bus in private attributes;
mcplane's hot path, gateway and metrics need them (is this name a local tool? which template
serves this URI? install or remove a handler).
"""

from __future__ import annotations

from typing import Any

from mcp.server.lowlevel import Server
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.prompts.base import Prompt
from mcp.server.mcpserver.resources.templates import ResourceSecurityError
from mcp.server.mcpserver.tools.base import Tool
from mcp.server.subscriptions import SubscriptionBus

__all__ = [
    "local_prompt",
    "local_resource",
    "local_tool",
    "lowlevel_server",
    "remove_request_handler",
    "server_info_stamp",
    "server_info_stamp_shared",
    "subscription_bus",
]


def lowlevel_server(sdk: MCPServer[Any]) -> Server[Any]:
    """The low-level server under ``sdk``: its request handlers, name, session manager, stamp."""
    return sdk._lowlevel_server  # pyright: ignore[reportPrivateUsage]


def server_info_stamp(sdk: MCPServer[Any]) -> dict[str, Any]:
    """The ``serverInfo`` the SDK's runner stamps on every 2026-07-28 result's ``_meta``."""
    return sdk._lowlevel_server.server_info_stamp  # pyright: ignore[reportPrivateUsage]


def server_info_stamp_shared(sdk: MCPServer[Any]) -> dict[str, Any]:
    """:func:`server_info_stamp` without the deep copy the SDK makes per response.

    The SDK computes the dump once per server and hands out a copy so that a caller changing its
    response cannot change later ones; the hot path serializes its response at once and changes
    nothing in it, so it takes the SDK's cached dump itself. Never write into what this returns.
    """
    return sdk._lowlevel_server._server_info_stamp_source  # pyright: ignore[reportPrivateUsage]


def subscription_bus(sdk: MCPServer[Any]) -> SubscriptionBus:
    """The bus ``subscriptions/listen`` streams read (a :class:`~mcplane.fanout.PlaneBus` on an :class:`SDKServer`)."""
    return sdk._subscriptions  # pyright: ignore[reportPrivateUsage]


def local_tool(sdk: MCPServer[Any], name: str) -> Tool | None:
    """The registered tool ``name`` (``None``: no local tool of that name)."""
    return sdk._tool_manager.get_tool(name)  # pyright: ignore[reportPrivateUsage]


def local_prompt(sdk: MCPServer[Any], name: str) -> Prompt | None:
    """The registered prompt ``name``."""
    return sdk._prompt_manager.get_prompt(name)  # pyright: ignore[reportPrivateUsage]


def local_resource(sdk: MCPServer[Any], uri: str) -> str | None:
    """What serves ``uri`` here: ``uri`` itself (a registered resource), the URI template it
    matches, or ``None`` (nothing, or a traversal attempt (``..``), which the SDK refuses as not found)."""
    manager = sdk._resource_manager  # pyright: ignore[reportPrivateUsage]
    if uri in manager._resources:  # pyright: ignore[reportPrivateUsage]
        return uri
    for template in manager._templates.values():  # pyright: ignore[reportPrivateUsage]
        try:
            matched = template.matches(uri)
        except ResourceSecurityError:
            return None
        if matched is not None:
            return str(template.uri_template)
    return None


def remove_request_handler(server: Server[Any], method: str) -> None:
    """Drop the low-level server's handler for ``method`` (the SDK has no public way to)."""
    server._request_handlers.pop(method, None)  # pyright: ignore[reportPrivateUsage]
