"""Serving a Plane over HTTP: one ASGI app for Streamable HTTP, WebSocket, health and readiness.

``POST/GET/DELETE /mcp`` is Streamable HTTP, both protocol eras on one endpoint (the SDK's
session manager routes 2026-07-28 stateless requests and 2025-11-25 sessions); a WebSocket
upgrade on the same path is the WebSocket transport. Before anything reaches the protocol
layer the HTTP tier (:mod:`mcplane.transports.tier`, composed by
:func:`~mcplane.transports.tier.build_http_tier`) checks Host/Origin, authenticates, checks the
content type and caps the body size, answering with a JSON-RPC error body and a stable code.

Session ids are sealed (:mod:`mcplane.transports.sessions`): a request for a session this
replica does not hold is served after the replica adopts the session from its id. With
``redis_url`` configured, a :class:`~mcplane.fanout.Fanout` carries notifications, list changes
and session ends between replicas.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import orjson
import pydantic_core
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcplane.errors import DependencyUnavailable
from mcplane.fanout import Fanout, replicate
from mcplane.fastpath import FastPath
from mcplane.sdk_adapter.mcpserver import lowlevel_server
from mcplane.sdk_adapter.sessions import open_sessions
from mcplane.transports.events import MemoryEventStore
from mcplane.transports.framing import decode_value, error_frame
from mcplane.transports.http_fast import Interruption, serve_fast
from mcplane.transports.refusals import Refusals, peer_of
from mcplane.transports.sealing import Revocations, SessionClaims, SessionSealer
from mcplane.transports.security import LOOPBACK_HOSTS, LOOPBACK_ORIGINS, HostOriginPolicy
from mcplane.transports.sessions import SessionManager
from mcplane.transports.tier import build_http_tier
from mcplane.transports.tier.answers import not_running, refusal, refuse_websocket, respond
from mcplane.transports.tier.body_cap import body_of
from mcplane.transports.tier.headers import headers_of

if TYPE_CHECKING:
    from mcplane.app import Plane
    from mcplane.observability import Observability
    from mcplane.transports.websocket import Connection

__all__ = ["HTTPApp", "HTTPOptions"]

logger = logging.getLogger("mcplane.http")

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class HTTPOptions:
    path: str = "/mcp"
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    """Largest request body (HTTP) or message (WebSocket frame) accepted."""
    allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS
    allowed_origins: tuple[str, ...] = LOOPBACK_ORIGINS
    json_response: bool = False
    """Answer POSTs with one JSON body instead of an SSE stream when nothing else must stream."""
    resumable: bool = True
    """Keep an in-memory event store so 2025-11-25 clients can resume SSE streams (Last-Event-ID)."""
    retry_interval_ms: int | None = 1000
    ws_ping_interval: float = 20.0
    max_websockets: int = 1024
    """Open WebSocket connections at most; one more is accepted and closed with 1013 (try again later)."""
    ws_idle_timeout: float = 300.0
    """A WebSocket connection with no message from its client and no call open this long is closed (1000, idle)."""
    max_sessions: int | None = 10_000
    """Open 2025-11-25 sessions at most (per process); one more ``initialize`` answers 503 (``None``: no cap)."""
    session_idle_timeout: float = 60.0
    """A 2025-11-25 session with no request for this long is dropped here (its sealed id can be adopted again)."""
    fast_path: bool = True
    """Answer plain ``tools/call`` requests on mcplane's hot path (see :mod:`mcplane.fastpath`)."""
    extra: dict[str, Any] = field(default_factory=dict)


class HTTPApp:
    """ASGI callable serving one Plane."""

    def __init__(self, plane: Plane, options: HTTPOptions | None = None) -> None:
        self.plane = plane
        self.options = options or HTTPOptions()
        self.guard = HostOriginPolicy(tuple(self.options.allowed_hosts), tuple(self.options.allowed_origins))
        self.refused = Refusals()
        """Counts and samples every request refused before the protocol (uvicorn's 431s included)."""
        self.draining = False
        self._manager: SessionManager | None = None
        self.fanout: Fanout | None = None
        """The channel to the other replicas, while running with ``redis_url`` configured."""
        self.fast: FastPath | None = plane.fast if self.options.fast_path else None
        self.fast_calls: dict[tuple[str | None, Any], Interruption] = {}
        """Calls suspended on the hot path in 2025-11-25 sessions, by (session, request id): for cancellation."""
        self.initialized_sessions: set[str] = set()
        """2025-11-25 sessions whose client sent ``notifications/initialized`` (hot-path eligible)."""
        self.observability: Observability | None = None
        self.websockets: set[Connection] = set()
        """Open WebSocket connections (closed in order at the end of a drain)."""
        self._websockets_gone: anyio.Event | None = None
        self._tier: ASGIApp = build_http_tier(self, None, None)
        """The HTTP tier in front of the endpoints; built again while running, with the session
        manager and the authenticator the lifespan made."""

    def note_initialized(self, session_id: str) -> None:
        manager = self._manager
        if manager is not None:
            # Forget sessions the SDK has dropped, so the set stays as small as the live sessions.
            self.initialized_sessions.intersection_update(open_sessions(manager))
        self.initialized_sessions.add(session_id)

    def _new_manager(self) -> SessionManager:
        opts = self.options
        section = self.plane.config.sessions
        if section.keys:
            sealer = SessionSealer([key.get().encode() for key in section.keys], ttl=section.ttl)
        else:
            sealer = SessionSealer.ephemeral(ttl=section.ttl)
        manager = SessionManager(
            lowlevel_server(self.plane.sdk),
            sealer=sealer,
            revocations=Revocations(sealer),
            event_store=MemoryEventStore() if opts.resumable else None,
            json_response=opts.json_response,
            stateless=False,
            security_settings=None,  # checked here, once, for HTTP and WebSocket alike
            retry_interval=opts.retry_interval_ms,
            max_request_body_size=opts.max_body_bytes,
            max_sessions=opts.max_sessions,
            session_idle_timeout=opts.session_idle_timeout,
        )
        manager.fail_open = section.fail_open
        manager.on_adopted = self._adopted
        return manager

    def _adopted(self, session_id: str, claims: SessionClaims) -> None:
        if claims.params is not None:  # the handshake happened (elsewhere): the hot path may serve it
            self.note_initialized(session_id)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncGenerator[None]:
        """What the ASGI lifespan runs: the plane's dependencies, the SDK session manager, the fan-out."""
        manager = self._new_manager()
        async with self.plane.lifespan(), manager.run(), replicate(self.plane, manager) as fanout:
            self._manager = manager
            self.fanout = fanout
            self.observability = self.plane.layers.observability
            if self.observability is not None:
                self.observability.bind(self.plane)
                if self.observability.metrics is not None:
                    self.refused.counter = self.observability.metrics.http_refusals
            self._tier = build_http_tier(self, manager, self.plane.layers.authenticator)
            try:
                yield
            finally:
                self._tier = build_http_tier(self, None, None)
                self._manager = None
                self.fanout = None
                self.observability = None
                self.refused.counter = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        else:
            await self._tier(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        message = await receive()
        assert message["type"] == "lifespan.startup"
        started = False
        try:
            async with self.running():
                await send({"type": "lifespan.startup.complete"})
                started = True
                message = await receive()
                self.draining = True
        except Exception as exc:
            if started:  # the startup was answered already: this failure belongs to the shutdown
                logger.error("shutdown failed: %s", exc, exc_info=exc)
                await send({"type": "lifespan.shutdown.failed", "message": type(exc).__name__})
            else:
                logger.error("startup failed: %s", exc)
                await send({"type": "lifespan.startup.failed", "message": type(exc).__name__})
            return
        await send({"type": "lifespan.shutdown.complete"})

    async def readiness(self) -> tuple[bool, dict[str, str]]:
        """``/ready``: the server, the fan-out channel and the plane's own checks."""
        checks: dict[str, tuple[bool, str]] = {}
        if self._manager is None:
            checks["server"] = (False, "not started")
        elif self.draining:
            checks["server"] = (False, "draining")
        else:
            checks["server"] = (True, "ok")
            if self.fanout is not None:
                up = self.fanout.subscribed.is_set()
                checks["fanout"] = (True, "ok") if up else (False, "fan-out channel unreachable")
            checks.update(await self.plane.readiness())
        ready = all(ok for ok, _ in checks.values())
        if self.observability is not None:
            self.observability.set_ready(ready)
        return ready, {k: v[1] for k, v in checks.items()}

    async def scrape(self) -> tuple[bytes, str] | None:
        """``/metrics``: Prometheus text, when ``observability.metrics`` is on and not moved to a port of its own."""
        obs = self.observability
        if obs is None or not obs.serves_mcp_port:
            return None
        return await obs.scrape()

    async def close_websockets(self, seconds: float) -> None:
        """End of a drain: each open WebSocket writes the answers it owes, then closes with 1001."""
        with anyio.move_on_after(seconds):
            while self.websockets:
                self._websockets_gone = anyio.Event()
                for connection in list(self.websockets):
                    connection.closing.set()
                await self._websockets_gone.wait()

    def websocket_closed(self, connection: Connection) -> None:
        self.websockets.discard(connection)
        if not self.websockets and self._websockets_gone is not None:
            self._websockets_gone.set()

    async def http_endpoint(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Streamable HTTP on the MCP path, behind the whole tier (a POST's body already read).

        The hot path answers what it can; the rest goes to the SDK's session manager with the
        body replayed, unchanged. A handshake-era body that is not one JSON-RPC message is
        refused here, and so is a new session when this process holds as many as it may.
        """
        manager = self._manager
        if manager is None:
            await not_running(scope, receive, send)
            return
        headers = headers_of(scope)
        session_id = headers.get("mcp-session-id")
        version = headers.get("mcp-protocol-version")
        handshake_era = version is None or version in HANDSHAKE_PROTOCOL_VERSIONS
        body = body_of(scope)
        if body is not None:
            if self.fast is not None and await serve_fast(self, scope, headers, body, send, receive):
                return
            if handshake_era and (refused := _not_a_message(body)) is not None:
                await respond(send, 400, refused)
                return
            receive = _replay(body, receive)
        if session_id is None:
            if handshake_era and manager.full():  # answered here: the SDK's refusal carries no error code
                self.refused(503, "too_many_sessions", peer_of(scope))
                await respond(send, 503, TOO_MANY_SESSIONS, extra_headers=((b"retry-after", b"1"),))
                return
            with manager.opening(body):
                await manager.handle_request(scope, receive, send)
        elif scope["method"] == "DELETE":
            await manager.delete(session_id, scope, receive, send)
        else:
            await manager.handle_request(scope, receive, send)

    async def websocket_endpoint(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The WebSocket transport on the MCP path (behind Host/Origin and authentication)."""
        from mcplane.transports.websocket import serve_websocket

        if scope["path"] != self.options.path:
            await refuse_websocket(receive, send, "no such endpoint")
            return
        await serve_websocket(self, scope, receive, send)


TOO_MANY_SESSIONS = refusal(DependencyUnavailable("too many open sessions; retry later"))


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that yields the already-read body once, then defers to the real one."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _not_a_message(body: bytes) -> bytes | None:
    """The error body for a POST body that is JSON but not one JSON-RPC message; ``None`` otherwise.

    The SDK's 2025-11-25 transport answers such a body with its validator's report (the input
    echoed, ``-32602``); WebSocket and stdio answer ``-32600`` (:func:`framing.decode_value`), and
    so does this. A body that is not JSON at all is left to the SDK's parse error.
    """
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError:
        try:  # what orjson refuses but the SDK parses: integers beyond 64 bits, NaN
            raw = pydantic_core.from_json(body)
        except ValueError:
            return None
    try:
        decoded = decode_value(raw)
    except orjson.JSONEncodeError:  # its id, an integer beyond 64 bits, cannot be echoed
        decoded = error_frame(None, -32600, "invalid request: not a JSON-RPC 2.0 message", "invalid_request")
    return decoded.encode() if isinstance(decoded, str) else None
