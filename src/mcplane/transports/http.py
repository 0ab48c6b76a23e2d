"""The HTTP tier: one pure-ASGI app for Streamable HTTP, WebSocket, health and readiness.

``POST/GET/DELETE /mcp`` is Streamable HTTP, both protocol eras on one endpoint (the SDK's
session manager routes 2026-07-28 stateless requests and 2025-11-25 sessions); a WebSocket
upgrade on the same path is the WebSocket transport. Before anything reaches the protocol
layer the tier checks Host/Origin and caps the body size, answering with a JSON-RPC error body
and a stable code.

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
from starlette.types import Message, Receive, Scope, Send

from mcplane.errors import DependencyUnavailable
from mcplane.fanout import Fanout, replicate
from mcplane.fastpath import FastPath
from mcplane.sdk_adapter.sessions import open_sessions
from mcplane.transports.events import MemoryEventStore
from mcplane.transports.framing import decode_value, error_frame
from mcplane.transports.http_fast import serve_fast
from mcplane.transports.refusals import Refusals, peer_of
from mcplane.transports.sealing import Revocations, SessionClaims, SessionSealer
from mcplane.transports.security import LOOPBACK_HOSTS, LOOPBACK_ORIGINS, HostOriginPolicy
from mcplane.transports.sessions import SessionManager, requestor

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
    session_idle_timeout: float = 1800.0
    """A 2025-11-25 session with no request for this long is dropped here (its sealed id can be adopted again)."""
    fast_path: bool = True
    """Answer plain ``tools/call`` requests on mcplane's hot path (see :mod:`mcplane.fastpath`)."""
    extra: dict[str, Any] = field(default_factory=dict)


def _error_body(status: int, code: str, message: str) -> bytes:
    jsonrpc_code = -32600 if status != 500 else -32603
    return orjson.dumps(
        {"jsonrpc": "2.0", "id": None, "error": {"code": jsonrpc_code, "message": message, "data": {"code": code}}}
    )


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes = b"application/json",
    extra_headers: tuple[tuple[bytes, bytes], ...] = (),
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *extra_headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _shutting_down_body(request_id: Any) -> bytes:
    error = DependencyUnavailable("the server is shutting down; retry on another instance", retry_after_ms=1000)
    return orjson.dumps(
        {
            "jsonrpc": "2.0",
            "id": request_id,
            "error": {"code": error.jsonrpc_code, "message": error.message, "data": error.to_dict()},
        }
    )


REFUSED_WHILE_DRAINING = frozenset({"tools/call", "resources/read", "prompts/get", "subscriptions/listen"})
"""Requests that start new work; everything else (lists, pings, answers, cancellations) still passes,
so a client can finish what it has in flight (the SDK's client lists tools to check a result)."""


def _new_work_in(body: bytes) -> list[Any] | None:
    """The ids of the requests in a POST body that would start new work; ``None``: not JSON."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    messages: list[Any] = parsed if isinstance(parsed, list) else [parsed]  # pyright: ignore[reportUnknownVariableType]
    return [
        m.get("id") for m in messages if isinstance(m, dict) and "id" in m and m.get("method") in REFUSED_WHILE_DRAINING
    ]


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
        self._auth: Any = None
        """Authentication in front of the MCP endpoint, when the plane's config has ``auth``."""
        self.fast_calls: dict[tuple[str | None, Any], anyio.CancelScope] = {}
        """Calls running on the hot path in 2025-11-25 sessions, by (session, request id): for cancellation."""
        self.initialized_sessions: set[str] = set()
        """2025-11-25 sessions whose client sent ``notifications/initialized`` (hot-path eligible)."""
        self.observability: Observability | None = None
        self.websockets: set[Connection] = set()
        """Open WebSocket connections (closed in order at the end of a drain)."""
        self._websockets_gone: anyio.Event | None = None

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
            self.plane.sdk._lowlevel_server,
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
            authenticator = self.plane.layers.authenticator
            if authenticator is not None:
                from mcplane.auth import AuthASGI

                self._auth = AuthASGI(
                    self._authenticated, authenticator, mcp_path=self.options.path, on_refused=self.refused
                )
            try:
                yield
            finally:
                self._manager = None
                self.fanout = None
                self._auth = None
                self.observability = None
                self.refused.counter = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

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

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        if path == "/health":
            await _respond(send, 200, b'{"status":"ok"}')
            return
        if path == "/ready":
            await self._ready(send)
            return
        if path == "/metrics":
            await self._metrics(send)
            return
        # Some HTTP parsers keep trailing blanks in header values; RFC 9110 says they are not part of it.
        scope["headers"] = [(k, v.strip(b" \t")) for k, v in scope["headers"]]
        headers = _headers(scope)
        rejection = self._check_guard(scope, headers)
        if rejection is not None:
            status, reason = rejection
            code = "invalid_request" if status == 400 else "forbidden"
            await _respond(send, status, _error_body(status, code, reason))
            return
        route = self.plane.layers.routes.get(path)
        if route is not None:  # an endpoint a provider added (it authenticates its own requests)
            await route(scope, receive, send)
            return
        if self._auth is not None:
            await self._auth(scope, receive, send)
        else:
            await self._authenticated(scope, receive, send)

    async def _ready(self, send: Send) -> None:
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
        body = {"status": "ready" if ready else "not ready", "checks": {k: v[1] for k, v in checks.items()}}
        await _respond(send, 200 if ready else 503, orjson.dumps(body))

    async def _metrics(self, send: Send) -> None:
        """Prometheus text, when ``observability.metrics`` is on and not moved to a port of its own."""
        obs = self.observability
        if obs is None or not obs.serves_mcp_port:
            await _respond(send, 404, _error_body(404, "not_found", "no such endpoint"))
            return
        body, content_type = await obs.scrape()
        await _respond(send, 200, body, content_type.encode())

    async def _refuse_draining(self, scope: Scope, receive: Receive, send: Send) -> Receive | None:
        """While draining: refuse a request that would start new work (503, ``dependency_unavailable``).

        New work is a call, a ``subscriptions/listen`` stream or a standalone SSE stream (``GET``).
        Returns the ``receive`` to go on with (the body replayed) for everything else: lists,
        pings, notifications, answers to the server's own requests, ``DELETE``; they help the
        calls in flight finish. ``None`` when refused.
        """
        method = scope["method"]
        if method == "DELETE":
            return receive
        request_ids: list[Any] | None = [None]
        if method == "POST":
            body = await _read_body(receive, self.options.max_body_bytes)
            if body is None:
                await _respond(send, 413, _error_body(413, "payload_too_large", "request body too large"))
                return None
            request_ids = _new_work_in(body)
            if request_ids is not None and not request_ids:
                return _replay(body, receive)
        request_id = request_ids[0] if request_ids and len(request_ids) == 1 else None
        await _respond(send, 503, _shutting_down_body(request_id), extra_headers=((b"retry-after", b"1"),))
        return None

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

    async def _authenticated(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._websocket_endpoint(scope, receive, send)
            return
        path: str = scope["path"]
        if path != self.options.path and path != self.options.path + "/":
            await _respond(send, 404, _error_body(404, "not_found", "no such endpoint"))
            return
        headers = _headers(scope)
        if scope["method"] == "POST" and not _is_json(headers.get("content-type")):
            # Answered here, as JSON-RPC: the SDK's own check answers with a text/plain 400.
            body = _error_body(415, "invalid_request", "Content-Type must be application/json")
            await _respond(send, 415, body)
            return
        limit = self.options.max_body_bytes
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _respond(send, 413, _error_body(413, "payload_too_large", "request body too large"))
            return
        manager = self._manager
        if manager is None:
            await _respond(send, 503, _error_body(503, "dependency_unavailable", "server is not running"))
            return
        session_id = headers.get("mcp-session-id")
        if session_id is not None and session_id not in open_sessions(manager):
            adoption = await manager.adopt(session_id, requestor(scope))
            if adoption in ("unavailable", "full"):
                reason = "cannot check the session now" if adoption == "unavailable" else "too many open sessions"
                body = _error_body(503, "dependency_unavailable", reason)
                await _respond(send, 503, body, extra_headers=((b"retry-after", b"1"),))
                return
        if self.draining:
            replayed = await self._refuse_draining(scope, receive, send)
            if replayed is not None and session_id is not None and scope["method"] == "DELETE":
                await manager.delete(session_id, scope, replayed, send)
            elif replayed is not None:
                await manager.handle_request(scope, replayed, send)
            return
        body: bytes | None = None
        version = headers.get("mcp-protocol-version")
        handshake_era = version is None or version in HANDSHAKE_PROTOCOL_VERSIONS
        if scope["method"] == "POST" and (
            declared is None or self.fast is not None or session_id is None or handshake_era
        ):
            # Read the body whole: to count an undeclared (chunked) one against the cap, to let
            # the hot path look at it, to check a 2025-11-25 message, and to seal an opening
            # request's params into the new session's id. The SDK gets it replayed, unchanged.
            body = await _read_body(receive, limit)
            if body is None:
                await _respond(send, 413, _error_body(413, "payload_too_large", "request body too large"))
                return
            if self.fast is not None and await serve_fast(self, scope, headers, body, send, receive):
                return
            if handshake_era and (refusal := _not_a_message(body)) is not None:
                await _respond(send, 400, refusal)
                return
            receive = _replay(body, receive)
        if session_id is None:
            if handshake_era and manager.full():  # answered here: the SDK's refusal carries no error code
                self.refused(503, "too_many_sessions", peer_of(scope))
                body = _error_body(503, "dependency_unavailable", "too many open sessions; retry later")
                await _respond(send, 503, body, extra_headers=((b"retry-after", b"1"),))
                return
            with manager.opening(body):
                await manager.handle_request(scope, receive, send)
        elif scope["method"] == "DELETE":
            await manager.delete(session_id, scope, receive, send)
        else:
            await manager.handle_request(scope, receive, send)

    def _check_guard(self, scope: Scope, headers: dict[str, str]) -> tuple[int, str] | None:
        """The Host/Origin check; a refusal is counted. Duplicates are refused, never resolved
        (one parser's first is another's last: RFC 9112 §3.2 answers 400 to two Hosts)."""
        if len(headers) < len(scope["headers"]):
            for name in (b"host", b"origin"):
                if sum(1 for key, _ in scope["headers"] if key == name) > 1:
                    reason = f"duplicate {name.decode()} header"
                    self.refused(400, f"duplicate_{name.decode()}", peer_of(scope))
                    return 400, reason
        rejection = self.guard.check(headers.get("host"), headers.get("origin"))
        if rejection is not None:
            self.refused(rejection[0], rejection[1].replace(" ", "_"), peer_of(scope))
        return rejection

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = _headers(scope)
        rejection = self._check_guard(scope, headers)
        if rejection is not None:
            await _refuse_websocket(receive, send, rejection[1])
            return
        if self._auth is not None:
            await self._auth(scope, receive, send)
        else:
            await self._authenticated(scope, receive, send)

    async def _websocket_endpoint(self, scope: Scope, receive: Receive, send: Send) -> None:
        from mcplane.transports.websocket import serve_websocket

        if scope["path"] != self.options.path:
            await _refuse_websocket(receive, send, "no such endpoint")
            return
        await serve_websocket(self, scope, receive, send)


async def _refuse_websocket(receive: Receive, send: Send, reason: str) -> None:
    """Refuse the upgrade: closing before accepting makes the server answer the handshake with 403.

    (A ``websocket.http.response`` denial could carry the JSON-RPC body, but uvicorn's default
    WebSocket implementation logs a spurious ERROR for every such denial: uvicorn PR #3138.)
    """
    message = await receive()
    if message["type"] == "websocket.connect":
        await send({"type": "websocket.close", "code": 1008, "reason": reason})


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or ``None`` as soon as it grows past ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b""  # the client went away: the protocol layer sees an empty body and a disconnect
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


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


def _is_json(content_type: str | None) -> bool:
    """A JSON media type, as the SDK's own check has it (``application/json``, any parameters)."""
    return content_type is not None and content_type.lower().startswith("application/json")


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


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
