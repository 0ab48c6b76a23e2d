"""One connection to a server: the official SDK client, run in a task of its own.

The SDK client's transport lives in task groups; if it crashes (the server went away), those
task groups cancel whatever encloses them. Entered in the caller's task, that would cancel the
caller. Entered here, in a task of the :class:`~mcplane.client.Client`'s own task group, a crash
only ends this connection: calls waiting on it get ``CONNECTION_CLOSED`` from the SDK and the
next call opens a new one.
"""

from __future__ import annotations

import logging
import shlex
import ssl
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
import httpx2
from anyio.abc import TaskStatus
from mcp import Client as SDKClient
from mcp import StdioServerParameters

from mcplane.client._errors import tls_failure, unwrap
from mcplane.errors import ConfigError

if TYPE_CHECKING:
    from mcplane.tls import PEMSource

__all__ = ["Connection", "Endpoint", "target_factory", "tls_for"]

logger = logging.getLogger("mcplane.client")

Endpoint = str | Sequence[str] | StdioServerParameters | Any
"""``http(s)://`` URL, ``ws(s)://`` URL, a command line (a string, split like a shell does, or an
argv list), ``StdioServerParameters``, or anything the SDK's ``mcp.Client`` accepts."""

_HTTP_TIMEOUT = httpx2.Timeout(30.0, read=300.0)
"""The SDK's own defaults: 30 s to connect, write and get a pooled connection; 300 s between reads."""


@asynccontextmanager
async def _http(url: str, headers: dict[str, str] | None, tls: ssl.SSLContext | None) -> AsyncGenerator[Any]:
    from mcp.client.streamable_http import streamable_http_client

    async with (
        httpx2.AsyncClient(headers=headers, timeout=_HTTP_TIMEOUT, verify=tls if tls is not None else True) as http,
        streamable_http_client(url, http_client=http) as streams,
    ):
        yield streams


def _websocket(url: str, headers: dict[str, str] | None, tls: ssl.SSLContext | None) -> Any:
    from mcplane.transports.websocket import websocket_client

    return websocket_client(url, headers=headers, ssl=tls)


def tls_for(
    endpoint: Endpoint,
    tls: ssl.SSLContext | None = None,
    *,
    ca: PEMSource | None = None,
    cert: PEMSource | None = None,
    key: PEMSource | None = None,
    verify: bool = True,
) -> ssl.SSLContext | None:
    """The TLS context for ``endpoint``: ``tls`` as given, else a cached
    :func:`~mcplane.tls.client_context` for ``https://``/``wss://`` (the same for every
    connection and every client with these options); ``None`` for a plain endpoint."""
    options = ca is not None or cert is not None or key is not None or not verify
    if tls is not None and options:
        raise ConfigError("give either tls= (a ready SSLContext) or ca=/cert=/key=/verify=, not both")
    secure = isinstance(endpoint, str) and endpoint.startswith(("https://", "wss://"))
    if not secure:
        if options:
            raise ConfigError("ca=, cert=, key= and verify= apply to https:// and wss:// endpoints only")
        return tls
    if tls is not None:
        return tls
    from mcplane.tls import client_context

    return client_context(ca=ca, cert=cert, key=key, verify=verify)


def target_factory(
    endpoint: Endpoint, *, headers: dict[str, str] | None = None, tls: ssl.SSLContext | None = None
) -> Callable[[], Any]:
    """What to hand ``mcp.Client`` for each (re)connection: transports are single-use, so a factory."""
    if isinstance(endpoint, str):
        if endpoint.startswith(("http://", "https://")):
            return lambda: _http(endpoint, headers, tls)
        if endpoint.startswith(("ws://", "wss://")):
            return lambda: _websocket(endpoint, headers, tls)
        endpoint = shlex.split(endpoint)
    if headers is not None or tls is not None:
        raise ConfigError("headers= and tls= apply to http(s):// and ws(s):// endpoints only")
    if isinstance(endpoint, Sequence) and not isinstance(endpoint, str):
        argv = [str(part) for part in endpoint]  # pyright: ignore[reportUnknownVariableType]
        if not argv:
            raise ConfigError("empty endpoint")
        params = StdioServerParameters(command=argv[0], args=argv[1:])
        return lambda: params
    return lambda: endpoint


class Connection:
    """An SDK client entered in its own task; :meth:`run` is started with ``task_group.start``."""

    def __init__(self, target: Any, options: dict[str, Any]) -> None:
        self.target = target
        self.options = options
        self.sdk: SDKClient | None = None
        self.dead = False
        self._closing = anyio.Event()

    def close(self) -> None:
        """Let the connection's task leave the SDK client (in its own task, as anyio requires)."""
        self.dead = True
        self._closing.set()

    async def run(self, *, task_status: TaskStatus[BaseException | None]) -> None:
        """Connect, report ``None`` (or the failure to connect) to the starter, and stay until closed."""
        started = False
        try:
            async with SDKClient(self.target, **self.options) as sdk:
                self.sdk = sdk
                started = True
                task_status.started(None)
                await self._closing.wait()
        except Exception as exc:
            if not started:
                task_status.started(tls_failure(exc) or unwrap(exc))
                return
            logger.debug("connection to %r ended: %r", self.target, unwrap(exc))
        finally:
            self.dead = True
