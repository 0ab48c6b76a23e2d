"""One replica of an upstream: a kept-open SDK client, supervised, with its breaker and in-flight count.

:meth:`EndpointConnection.run` is the supervisor, started in the gateway's task group. It opens
the official SDK client (``mcp.Client``) in its own task — a transport crash then ends only this
connection — fetches the catalog, and stays: every ``health_check.interval`` it lists tools again
(the probe, which also refreshes the catalog), and it re-lists at once on a list-changed
notification. When the connection breaks (a call saw a transport failure, the probe failed, the
process died), it reconnects after a backoff that doubles up to ``restart.max``.

* stdio: the command is spawned by the SDK's ``stdio_client`` (which kills the process tree when
  the client closes, so no zombie outlives the gateway); its stderr is read line by line into the
  ``mcplane.gateway.upstream`` logger.
* Streamable HTTP: one ``httpx`` client with pooled keep-alive connections and one session for
  the connection's lifetime (one ``initialize`` per connection, never per call). Plain tool calls
  go out on the connection's :class:`~mcplane.gateway.lean.LeanLane` (same client, same session).
* WebSocket: mcplane's ``websocket_client``.

**Two eras, two links.** An HTTP or WebSocket endpoint in ``mode: auto`` whose upstream speaks
2026-07-28 also opens a 2025-11-25 session to it (the *legacy link*): 2025-11-25 callers are
served on it, so an upstream tool that asks its caller mid-call (``sampling/createMessage``,
``elicitation/create``, ``roots/list``) or logs to it reaches them as it would directly, while
2026-07-28 callers use the stateless link (multi-round-trip input, tasks). Without a legacy link
(a stdio endpoint, a pinned ``mode``, or the second session failed to open), every caller uses
the one link. On a 2026-07-28 link the endpoint keeps a ``subscriptions/listen`` stream open for
list changes (the upstream has no other way to announce them); on a 2025-11-25 link they arrive
as notifications, as do ``notifications/resources/updated`` for the URIs callers subscribed to.

The client answers an upstream's questions by asking the call's caller
(:mod:`mcplane.gateway.relay`) and relays its log messages; with ``identity: forward`` or
``principal_header`` or ``exchange`` its HTTP transport stamps each call's headers (:mod:`mcplane.gateway.identity`).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

import anyio
from mcp import Client as SDKClient
from mcp import StdioServerParameters
from mcp.client.session import ClientRequestContext, IncomingMessage
from mcp_types import (
    CreateMessageRequestParams,
    CreateMessageResult,
    DiscoverResult,
    ElicitRequestParams,
    ElicitResult,
    ErrorData,
    ListRootsResult,
    LoggingMessageNotificationParams,
    PromptListChangedNotification,
    ResourceListChangedNotification,
    ResourceUpdatedNotification,
    ToolListChangedNotification,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from mcplane.client._connection import target_factory  # pyright: ignore[reportPrivateUsage]
from mcplane.gateway.breaker import CircuitBreaker
from mcplane.gateway.config import Endpoint, StdioEndpoint, UpstreamConfig
from mcplane.gateway.identity import HEADER_MODES, stamping
from mcplane.gateway.lean import LeanLane
from mcplane.gateway.relay import current_caller, relay_elicitation, relay_log, relay_roots, relay_sampling

if TYPE_CHECKING:
    from mcplane.context import Context

__all__ = ["EndpointConnection", "Link"]

logger = logging.getLogger("mcplane.gateway")
upstream_logger = logging.getLogger("mcplane.gateway.upstream")

Refresh = Callable[["EndpointConnection", SDKClient], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Link:
    """One SDK client to the upstream and, for Streamable HTTP, the lean lane beside it."""

    sdk: SDKClient
    lane: LeanLane | None

    @property
    def modern(self) -> bool:
        return self.sdk.protocol_version in MODERN_PROTOCOL_VERSIONS


class EndpointConnection:
    """A replica: ``sdk`` is the live client (``None`` while down), ``breaker`` its circuit breaker."""

    def __init__(
        self,
        upstream: str,
        index: int,
        endpoint: Endpoint,
        config: UpstreamConfig,
        *,
        refresh: Refresh,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.upstream = upstream
        self.index = index
        self.endpoint = endpoint
        self.config = config
        self.name = f"{upstream}[{index}] {endpoint.describe()}"
        self.label = f"[{index}] {endpoint.describe()}"
        """The ``endpoint`` label of its metrics."""
        self.breaker = CircuitBreaker(config.breaker, clock=clock) if clock else CircuitBreaker(config.breaker)
        self.in_flight = 0
        self.sdk: SDKClient | None = None
        self.lean: LeanLane | None = None
        """The lean path of the current connection (HTTP endpoints unless ``lean: false``)."""
        self.legacy: Link | None = None
        """The 2025-11-25 link beside a 2026-07-28 one (see the module doc), while connected."""
        self.on_resource_updated: Callable[[str], Awaitable[None]] | None = None
        """Called with the URI of each ``notifications/resources/updated`` the upstream sends."""
        self.connections = 0
        """Successful connects so far (a restart makes it grow)."""
        self.first_attempt = anyio.Event()
        """Set once the first connection attempt has finished, whatever its outcome."""
        self.callers: list[Context] = []
        """The gateway calls in flight on this endpoint (whom an upstream's question may be for)."""
        self.on_status: Callable[[EndpointConnection], None] | None = None
        """Called when the endpoint connects or loses its connection (metrics, readiness)."""
        self._refresh = refresh
        self._wake = anyio.Event()
        self._broken = False
        self._closing = False
        self._relist = False

    # ----------------------------------------------------------------- state
    @property
    def connected(self) -> bool:
        return self.sdk is not None and not self._broken

    def can_take(self) -> bool:
        return self.connected and self.breaker.available()

    def link(self, *, modern_caller: bool) -> Link | None:
        """The link a caller of that era is served on: the legacy link for 2025-11-25 callers when
        there is one, else the connection's own."""
        if self.sdk is None:
            return None
        if not modern_caller and self.legacy is not None:
            return self.legacy
        return Link(self.sdk, self.lean)

    def mark_broken(self) -> None:
        """A call saw the connection fail: have the supervisor reconnect."""
        if self.sdk is not None and not self._broken:
            logger.warning("upstream %s: connection broken; reconnecting", self.name)
        self._broken = True
        self._wake.set()
        self._status()

    def _status(self) -> None:
        if self.on_status is not None:
            self.on_status(self)

    def close(self) -> None:
        self._closing = True
        self._wake.set()

    def reopen(self) -> None:
        """Let :meth:`run` serve again after :meth:`close` (the gateway plane was opened again)."""
        self._closing = self._broken = False
        self._wake = anyio.Event()
        self.first_attempt = anyio.Event()

    # ----------------------------------------------------------------- supervisor
    async def run(self) -> None:
        delay = self.config.restart.initial
        while not self._closing:
            errlog: TextIO | None = None
            try:
                self.lean = None
                target, errlog = self._target()
                if self.endpoint.kind == "http" and self.config.identity.mode in HEADER_MODES:
                    target = stamping(target)
                # One scope around the whole connection (a task group entered inside a scope
                # must not outlive it): its deadline bounds the connect, then is lifted.
                with anyio.CancelScope(deadline=anyio.current_time() + self.config.connect_timeout) as scope:
                    async with self._client(target, self.config.mode) as client, AsyncExitStack() as extra:
                        if errlog is not None:
                            errlog.close()  # the child holds its copy; EOF comes when it exits
                            errlog = None
                        if self.config.mode not in ("auto", "legacy"):
                            # A pinned era skips the SDK's probe and assumes no capabilities:
                            # ask the upstream what it offers (server/discover), else the catalog stays empty.
                            session = client.session
                            session.adopt(DiscoverResult.model_validate(await session.send_discover(self.config.mode)))
                        await self._open_legacy(client, extra)
                        try:
                            await self._serve(client, scope)
                        finally:
                            self.sdk = None
                            self.legacy = None
                            self._status()
                        delay = self.config.restart.initial
                if scope.cancelled_caught:
                    raise TimeoutError(f"no connection within {self.config.connect_timeout:g} s")
            except Exception as exc:
                if not self._closing:
                    logger.warning("upstream %s: connection failed: %s", self.name, _describe(exc))
            finally:
                self.sdk = None
                self.lean = None
                self.legacy = None
                if errlog is not None:
                    errlog.close()
                self.first_attempt.set()
            if self._closing:
                break
            with anyio.move_on_after(delay):
                await self._wait_wake()
            delay = min(delay * 2, self.config.restart.max)

    def _client(self, target: Any, mode: str) -> SDKClient:
        return SDKClient(
            target,
            mode=mode,  # pyright: ignore[reportArgumentType]
            cache=None,
            message_handler=self._on_message,  # pyright: ignore[reportArgumentType]
            elicitation_callback=self._on_elicit,
            sampling_callback=self._on_sample,  # pyright: ignore[reportArgumentType]
            list_roots_callback=self._on_roots,
            logging_callback=self._on_log,
        )

    async def _open_legacy(self, client: SDKClient, stack: AsyncExitStack) -> None:
        """Open the legacy link beside a 2026-07-28 connection (see the module doc); on failure, go without."""
        if (
            self.config.mode != "auto"
            or self.endpoint.kind == "stdio"
            or client.protocol_version not in MODERN_PROTOCOL_VERSIONS
        ):
            return
        primary_lane = self.lean
        try:
            target, _ = self._target()
            if self.endpoint.kind == "http" and self.config.identity.mode in HEADER_MODES:
                target = stamping(target)
            legacy = await stack.enter_async_context(self._client(target, "legacy"))
        except Exception as exc:
            logger.warning("upstream %s: no 2025-11-25 session beside 2026-07-28: %s", self.name, _describe(exc))
            self.lean = primary_lane
            return
        self.legacy, self.lean = Link(legacy, self.lean), primary_lane

    async def _serve(self, client: SDKClient, scope: anyio.CancelScope) -> None:
        await self._refresh(self, client)
        scope.deadline = float("inf")
        self._broken = False
        self.sdk = client
        self.connections += 1
        self.first_attempt.set()
        self._status()
        logger.info("upstream %s: connected (%s)", self.name, client.protocol_version)
        async with anyio.create_task_group() as tg:
            if client.protocol_version in MODERN_PROTOCOL_VERSIONS:
                tg.start_soon(self._listen, client)
            while not self._closing and not self._broken:
                with anyio.move_on_after(self.config.health_check.interval):
                    await self._wait_wake()
                if self._closing or self._broken:
                    break
                self._relist = False
                try:
                    with anyio.fail_after(self.config.connect_timeout):
                        await self._refresh(self, client)
                except Exception as exc:
                    logger.warning("upstream %s: health check failed: %s", self.name, _describe(exc))
                    self._broken = True
                self._status()
            tg.cancel_scope.cancel()

    async def _listen(self, client: SDKClient) -> None:
        """Hear a 2026-07-28 upstream's list changes on a ``subscriptions/listen`` stream (re-opened when it ends)."""
        delay = self.config.restart.initial
        while True:
            try:
                async with client.listen(
                    tools_list_changed=True, prompts_list_changed=True, resources_list_changed=True
                ) as subscription:
                    delay = self.config.restart.initial
                    async for _event in subscription:
                        self._list_changed()
            except Exception as exc:  # not offered, or the stream dropped: the health check still re-lists
                logger.debug("upstream %s: list-change stream ended: %s", self.name, _describe(exc))
            await anyio.sleep(delay)
            delay = min(delay * 2, self.config.restart.max)

    async def _wait_wake(self) -> None:
        await self._wake.wait()
        self._wake = anyio.Event()

    async def _on_message(self, message: IncomingMessage) -> None:
        root: Any = getattr(message, "root", message)
        if isinstance(
            root, ToolListChangedNotification | ResourceListChangedNotification | PromptListChangedNotification
        ):
            self._relist = True
            self._wake.set()  # the supervisor re-lists now instead of at the next probe
        elif isinstance(root, ResourceUpdatedNotification):
            if self.on_resource_updated is not None:
                await self.on_resource_updated(str(root.params.uri))
        elif isinstance(message, Exception):
            logger.debug("upstream %s: transport reported %s", self.name, _describe(message))
        await anyio.lowlevel.checkpoint()

    def _caller(self) -> Context | None:
        caller = current_caller.get()
        if caller is None and len(self.callers) == 1:
            caller = self.callers[0]  # a legacy stdio/WebSocket session links no question to its call
        return caller

    async def _on_elicit(self, context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        return await relay_elicitation(self._caller(), params)

    async def _on_sample(
        self, context: ClientRequestContext, params: CreateMessageRequestParams
    ) -> CreateMessageResult | ErrorData:
        return await relay_sampling(self._caller(), params)

    async def _on_roots(self, context: ClientRequestContext) -> ListRootsResult | ErrorData:
        return await relay_roots(self._caller())

    async def _on_log(self, params: LoggingMessageNotificationParams) -> None:
        await relay_log(self._caller(), params)

    def _target(self) -> tuple[Any, TextIO | None]:
        endpoint = self.endpoint
        if isinstance(endpoint, StdioEndpoint):
            from mcp.client.stdio import stdio_client

            params = StdioServerParameters(
                command=endpoint.command,
                args=list(endpoint.args),
                env={key: value.get() for key, value in endpoint.env.items()} or None,
                cwd=endpoint.cwd,
            )
            errlog = _stderr_pipe(self.name)
            return stdio_client(params, errlog=errlog), errlog
        headers = {key: value.get() for key, value in self.config.headers.items()} or None
        tls = None
        if endpoint.url.startswith(("https://", "wss://")):
            from mcplane.tls import client_context

            # Cached: every (re)connection of every endpoint of this upstream shares one context.
            settings = self.config.tls
            tls = (
                client_context()
                if settings is None
                else client_context(
                    ca=settings.ca.get() if settings.ca is not None else None,
                    cert=settings.cert.get() if settings.cert is not None else None,
                    key=settings.key.get() if settings.key is not None else None,
                    verify=settings.verify,
                    server_name=settings.server_name,
                )
            )
        if endpoint.kind == "http" and self.config.lean:
            self.lean = LeanLane(endpoint.url, on_list_changed=self._list_changed)
            return self.lean.transport(headers, tls), None
        return target_factory(endpoint.url, headers=headers, tls=tls)(), None

    def _list_changed(self) -> None:
        self._relist = True
        self._wake.set()

    def __repr__(self) -> str:
        return f"EndpointConnection({self.name!r}, connected={self.connected}, breaker={self.breaker.state})"


def _stderr_pipe(name: str) -> TextIO:
    """A pipe for a child's stderr; a daemon thread logs its lines until the child closes it."""
    read_fd, write_fd = os.pipe()
    reader = os.fdopen(read_fd, "r", encoding="utf-8", errors="replace")

    def pump() -> None:
        with reader:
            for line in reader:
                upstream_logger.info("%s stderr: %s", name, line.rstrip())

    threading.Thread(target=pump, name=f"stderr {name}", daemon=True).start()
    return os.fdopen(write_fd, "w", encoding="utf-8")


def _describe(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
