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
import orjson
from anyio.abc import TaskStatus
from mcp import Client as SDKClient
from mcp import StdioServerParameters

from mcplane.client._errors import tls_failure, unwrap
from mcplane.errors import ConfigError, DependencyUnavailable
from mcplane.jsonrpc import mcplane_error_envelope

if TYPE_CHECKING:
    from mcplane.tls import PEMSource

__all__ = [
    "GATEWAY_STATUSES",
    "HTTP_TIMEOUT",
    "Connection",
    "Endpoint",
    "HTTPClient",
    "gateway_failure",
    "target_factory",
    "tls_for",
]

logger = logging.getLogger("mcplane.client")

Endpoint = str | Sequence[str] | StdioServerParameters | Any
"""``http(s)://`` URL, ``ws(s)://`` URL, a command line (a string, split like a shell does, or an
argv list), ``StdioServerParameters``, or anything the SDK's ``mcp.Client`` accepts."""

HTTP_TIMEOUT = httpx2.Timeout(30.0, read=300.0)
"""The SDK's own defaults: 30 s to connect, write and get a pooled connection; 300 s between reads."""


GATEWAY_STATUSES = frozenset({502, 503, 504})
"""What a load balancer or proxy in front answers when it could not get an answer from a server."""


def _retry_after_ms(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit():
        return None  # an HTTP date is rare in front of an API; no hint then
    return int(value.strip()) * 1000


def _is_jsonrpc(body: bytes) -> bool:
    try:
        message = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return isinstance(message, dict) and "jsonrpc" in message


def gateway_failure(status: int, retry_after: str | None, body: bytes) -> bytes | None:
    """The JSON-RPC error body standing in for a gateway's 502/503/504, or ``None``.

    A load balancer or proxy in front answers these with a page of its own (HTML, or JSON that
    is not JSON-RPC) when no server answered: a replica died, none is up yet. The SDK would turn
    that into a bare ``-32603`` "Server returned an error response", which nothing can tell
    from a server's own failure. Here it becomes mcplane's ``dependency_unavailable``
    (retryable, ``retry_after_ms`` from ``Retry-After``, ``details.reason`` ``gateway_error``),
    so :class:`~mcplane.client.Client` retries idempotent and read-only calls. A JSON-RPC
    answer is the server's own and is left as it is.
    """
    if status not in GATEWAY_STATUSES or _is_jsonrpc(body):
        return None
    error = DependencyUnavailable(
        f"the server could not be reached: HTTP {status} from a gateway in front of it",
        retry_after_ms=_retry_after_ms(retry_after),
        details={"reason": "gateway_error", "status": status},
    )
    return orjson.dumps(mcplane_error_envelope(None, error))


class HTTPClient(httpx2.AsyncClient):
    """httpx's client, reading a gateway's 502/503/504 as ``dependency_unavailable``
    (:func:`gateway_failure`), for every request the SDK sends."""

    async def send(self, request: httpx2.Request, **kwargs: Any) -> httpx2.Response:
        response = await super().send(request, **kwargs)
        if response.status_code not in GATEWAY_STATUSES:
            return response
        try:
            content = await response.aread()  # a short page (the SDK reads a JSON one whole too)
        finally:
            await response.aclose()
        retry_after = response.headers.get("retry-after")
        body = gateway_failure(response.status_code, retry_after, content)
        if body is None:
            return response
        logger.debug("HTTP %d from a gateway for %s: dependency_unavailable", response.status_code, request.url)
        headers = {"content-type": "application/json"}
        if retry_after is not None:
            headers["retry-after"] = retry_after
        return httpx2.Response(response.status_code, headers=headers, content=body, request=request)


@asynccontextmanager
async def _http(
    url: str, headers: dict[str, str] | None, tls: ssl.SSLContext | None, auth: httpx2.Auth | None = None
) -> AsyncGenerator[Any]:
    from mcp.client.streamable_http import streamable_http_client

    verify = tls if tls is not None else True
    async with (
        HTTPClient(headers=headers, timeout=HTTP_TIMEOUT, verify=verify, auth=auth) as http,
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
    endpoint: Endpoint,
    *,
    headers: dict[str, str] | None = None,
    tls: ssl.SSLContext | None = None,
    auth: httpx2.Auth | None = None,
) -> Callable[[], Any]:
    """What to hand ``mcp.Client`` for each (re)connection: transports are single-use, so a factory.

    ``auth`` (an ``http(s)://`` endpoint only): an httpx auth flow such as the SDK's OAuth client."""
    if auth is not None and not (isinstance(endpoint, str) and endpoint.startswith(("http://", "https://"))):
        raise ConfigError("auth= applies to http(s):// endpoints only")
    if isinstance(endpoint, str):
        if endpoint.startswith(("http://", "https://")):
            return lambda: _http(endpoint, headers, tls, auth)
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
