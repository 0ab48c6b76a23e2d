"""The agent side of mcplane: a client for MCP servers with deadlines, retries, a budget,
trace context and typed errors, built on the official SDK client.

::

    from mcplane.client import Budget, Client

    async with Client("https://tools.example.com/mcp", budget=Budget(tokens=10_000)) as client:
        async with client.step(deadline=2.0):          # the agent step's time, for every call in it
            invoice = await client.call_tool("get_invoice", {"invoice_id": "inv-3"})

Endpoints: ``http(s)://`` (Streamable HTTP), ``ws(s)://`` (mcplane's WebSocket transport), or a
command line (stdio). ``auth=`` takes :func:`mcplane.client.oauth.oauth` to log in to an
OAuth-protected server. Exceptions are those of :mod:`mcplane.errors`, plus :class:`ToolFailed`
for error results that carry no mcplane error object.
"""

from mcplane.client._budget import COST_META_KEY, Budget, estimate_tokens
from mcplane.client._client import DEFAULT, Client
from mcplane.client._deadline import Step, current_step
from mcplane.client._errors import ToolFailed
from mcplane.client._retry import RetryPolicy

__all__ = [
    "COST_META_KEY",
    "DEFAULT",
    "Budget",
    "Client",
    "RetryPolicy",
    "Step",
    "ToolFailed",
    "current_step",
    "estimate_tokens",
]
