"""2025-11-25 sessions that continue on any replica: the session id *is* the session.

**Why sealed ids, not session state in Redis.** A 2025-11-25 session holds little that a
replica must know: the negotiated protocol version, the client's ``initialize`` params (client
info and capabilities) and the credential that opened it. mcplane puts exactly that in the
``Mcp-Session-Id`` itself, encrypted and authenticated (AES-256-GCM, the SDK's request-state
codec under keys derived for this purpose only). A replica that gets a request for a session
it has never seen unseals the id and *adopts* the session: it builds the SDK transport and
server loop for it in the initialized state, so every method works there, not only the hot
path. No Redis round trip per request, and sessions survive the loss of Redis (or of the replica
that opened them). The price: an id cannot be taken back by forgetting it, so ending a session
early needs a revocation list (below), and the id is a few hundred bytes long.

**Keys.** ``sessions.keys`` in ``mcplane.yaml`` (secrets of at least 32 bytes) is a rotation
ring: the first key seals, every key unseals. Rotate with ``[old, new]`` everywhere, then
``[new, old]``, then ``[new]`` once ``sessions.ttl`` has passed. Without configured keys each
process draws a random key: sessions then live on the process that opened them, as with a
single replica.

**Ending a session.** A session ends when its id is older than ``sessions.ttl`` or when the
client sends ``DELETE``. The replica that serves the ``DELETE`` remembers the id as revoked
until it would have expired; with Redis configured it also writes the revocation to Redis
(checked once per session per replica, when it adopts the session) and tells the other replicas
on the fan-out channel, which close their copies. Without Redis a ``DELETE`` ends the session
only on the replica that served it: another replica holding the same keys still accepts the id
until its TTL runs out, so keep ``sessions.ttl`` short where that matters.

**Idle sessions.** A replica drops a session that has no request in flight and no GET stream
open for ``sessions.idle_timeout`` (``session_idle_timeout``; :meth:`SessionManager.park` does it
at once) and rebuilds it from the id on its next request, as any replica would: a held session
costs ≈ 30 KiB (its SDK transport, server loop and ``Connection``), a dropped one its id in a few
sets. What a handler kept on the old ``Connection`` comes back only through the session's state
record (:mod:`mcplane.transports.session_state`), restored into the new one on adoption.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Literal

import anyio
from anyio.abc import TaskStatus
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser, AuthorizationContext, authorization_context
from mcp.server.connection import Connection
from mcp.server.runner import serve_connection
from mcp.server.streamable_http import EventStore, StreamableHTTPServerTransport
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.jsonrpc_dispatcher import JSONRPCDispatcher
from mcp.shared.message import ServerMessageMetadata, SessionMessage
from mcp.shared.transport_context import TransportContext
from mcp_types import InitializeRequestParams, JSONRPCNotification
from pydantic import ValidationError
from starlette.types import Message, Receive, Scope, Send

from mcplane.sdk_adapter.sessions import SDKSessionManager, SDKSessionTransport, park_if_idle
from mcplane.transports.events import MemoryEventStore
from mcplane.transports.sealing import Revocations, SessionClaims, SessionSealer
from mcplane.transports.session_state import session_state

if TYPE_CHECKING:
    from types import TracebackType

    from mcplane.fanout import Fanout
    from mcplane.sdk_adapter.streams import ReadStream, WriteStream

__all__ = [
    "Adoption",
    "Revocations",
    "SessionClaims",
    "SessionManager",
    "SessionSealer",
    "SessionTransport",
    "requestor",
]

logger = logging.getLogger("mcplane.sessions")


def requestor(scope: Scope) -> AuthorizationContext | None:
    """The credential of a request, as the SDK compares it with a session's owner."""
    user = scope.get("user")
    return authorization_context(user) if isinstance(user, AuthenticatedUser) else None


class SessionTransport(SDKSessionTransport):
    """The SDK's transport, plus: notifications for a client whose GET stream is on another
    replica are handed to the fan-out, and the fan-out can write to this session's GET stream."""

    relay: Callable[[str, dict[str, Any]], None] | None = None
    server_write: WriteStream[SessionMessage] | None = None

    @contextlib.asynccontextmanager
    async def connect(
        self,
    ) -> AsyncGenerator[tuple[ReadStream[SessionMessage | Exception], WriteStream[SessionMessage]]]:
        async with super().connect() as (read_stream, write_stream):
            self.server_write = write_stream
            try:
                yield _Releasing(read_stream), _Relaying(write_stream, self)
            finally:
                self.server_write = None

    async def deliver(self, message: dict[str, Any]) -> bool:
        """Write a notification to this session's GET stream, if this replica holds it."""
        write = self.server_write
        if write is None or not self.has_standalone_stream or self.is_terminated:
            return False
        try:
            notification = JSONRPCNotification.model_validate(message)
        except ValidationError:
            return False
        with anyio.move_on_after(5.0):
            try:
                await write.send(SessionMessage(notification))
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                return False
            return True
        return False


class _Relaying:
    """The server loop's write stream: standalone notifications also go to the fan-out when no
    GET stream is open here (the client may hold one on another replica)."""

    def __init__(self, inner: WriteStream[SessionMessage], transport: SessionTransport) -> None:
        self._inner = inner
        self._transport = transport

    async def send(self, item: SessionMessage, /) -> None:
        transport = self._transport
        relay = transport.relay
        if relay is not None and isinstance(item.message, JSONRPCNotification) and not transport.has_standalone_stream:
            metadata = item.metadata
            related = metadata.related_request_id if isinstance(metadata, ServerMessageMetadata) else None
            if related is None and transport.mcp_session_id is not None:
                relay(transport.mcp_session_id, item.message.model_dump(by_alias=True, mode="json", exclude_none=True))
        await self._inner.send(item)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> _Relaying:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc_val: BaseException | None, exc_tb: TracebackType | None
    ) -> None:
        await self.aclose()


class _Releasing:
    """The server loop's read stream: each message is handed on as a copy whose metadata (the HTTP
    request it came in: scope, headers, body, the ASGI cycle) is dropped when the loop asks for the
    next message. By then the loop has dispatched it (its handler was given the metadata itself),
    and an idle session would otherwise keep its last request alive until the next one (≈ 5 KiB)."""

    __slots__ = ("_inner", "_last")

    def __init__(self, inner: ReadStream[SessionMessage | Exception]) -> None:
        self._inner = inner
        self._last: SessionMessage | None = None

    @property
    def last_context(self) -> Any:
        """The sender's context snapshot, which the SDK's loop reads from its read stream."""
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> SessionMessage | Exception:
        last = self._last
        if last is not None:
            self._last = None
            last.metadata = None
        item = await self._inner.receive()
        if isinstance(item, SessionMessage):
            item = self._last = SessionMessage(item.message, item.metadata)
        return item

    def __aiter__(self) -> _Releasing:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        self._last = None
        await self._inner.aclose()

    async def __aenter__(self) -> _Releasing:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc_val: BaseException | None, exc_tb: TracebackType | None
    ) -> None:
        await self.aclose()


_OPENING: ContextVar[bytes | None] = ContextVar("mcplane_opening_body", default=None)

Adoption = Literal["known", "adopted", "unknown", "unavailable", "full"]


class SessionManager(SDKSessionManager):
    """The SDK's session manager with sealed session ids and adoption of sessions opened elsewhere."""

    def __init__(self, app: Any, *, sealer: SessionSealer, revocations: Revocations, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.sealer = sealer
        self.revocations = revocations
        self.fanout: Fanout | None = None
        self.fail_open = False
        """Adopt a session when Redis cannot say whether it was revoked (``sessions.fail_open``)."""
        self.on_adopted: Callable[[str, SessionClaims], None] | None = None
        self.state = session_state(app)
        """The sessions' state records (:mod:`mcplane.transports.session_state`), shared with the plane's handlers."""
        self.state.bind(sealer, revocations)
        self._transport_security = self.security_settings or TransportSecuritySettings(
            enable_dns_rebinding_protection=False
        )
        """One settings model for every session's transport (the SDK builds one per session when given none)."""

    @contextlib.contextmanager
    def opening(self, body: bytes | None) -> Generator[None]:
        """While serving a request without a session id: ``body`` is what an opened session seals."""
        token = _OPENING.set(body)
        try:
            yield
        finally:
            _OPENING.reset(token)

    def new_transport(self, session_id: str) -> SessionTransport:
        transport = SessionTransport(
            mcp_session_id=session_id,
            is_json_response_enabled=self.json_response,
            event_store=self._events_of(session_id),
            security_settings=self._transport_security,
            retry_interval=self.retry_interval,
            idle_timeout=self.session_idle_timeout,
        )
        if self.fanout is not None:
            transport.relay = self._relay
        return transport

    def _events_of(self, session_id: str) -> EventStore | None:
        """The event store as this session sees it: its own events only (see :mod:`mcplane.transports.events`)."""
        store = self.event_store
        return store.for_session(session_id) if isinstance(store, MemoryEventStore) else store

    def _relay(self, session_id: str, message: dict[str, Any]) -> None:
        if self.fanout is not None:
            self.fanout.publish("s", {"i": session_id, "m": message})

    def full(self) -> bool:
        """Whether ``max_sessions`` sessions are open here (a new or adopted one would be refused)."""
        return self.max_sessions is not None and len(self.sessions) >= self.max_sessions

    def admit(self, requestor: AuthorizationContext | None) -> StreamableHTTPServerTransport | None:
        if self.full():
            return None
        session_id = self.sealer.seal(self.sealer.opening_claims(_OPENING.get(), requestor))
        transport = self.new_transport(session_id)
        self.register(session_id, transport, requestor)
        return transport

    async def adopt(self, session_id: str, requestor: AuthorizationContext | None) -> Adoption:
        """Make a session opened elsewhere (or dropped here while idle) live on this replica."""
        if session_id in self.sessions:
            return "known"
        claims = self.sealer.unseal(session_id)
        if claims is None or self.revocations.revoked_here(claims.sid):
            return "unknown"
        if (dict(claims.owner) if claims.owner is not None else None) != (
            dict(requestor) if requestor is not None else None
        ):
            logger.warning("refusing session %s…: credential does not match the one that opened it", claims.sid[:8])
            return "unknown"
        try:
            if await self.revocations.revoked(claims):
                return "unknown"
        except Exception as exc:
            if not self.fail_open:
                logger.warning("cannot check session revocation: %s", type(exc).__name__)
                return "unavailable"
            logger.warning("cannot check session revocation (%s); adopting (fail_open)", type(exc).__name__)
        record = await self.state.read(claims)
        restoring: list[Awaitable[None]] = []
        async with self.creation_lock:
            if session_id in self.sessions:
                return "known"
            if self.max_sessions is not None and len(self.sessions) >= self.max_sessions:
                return "full"
            if self.task_group is None:
                return "unavailable"
            transport = self.new_transport(session_id)
            self.register(session_id, transport, requestor)
            try:
                await self.task_group.start(self._run_adopted, transport, claims, record, restoring)
            except BaseException:
                await self.discard(session_id, transport)
                raise
        for pending in restoring:  # outside the lock; the request that adopted the session waits for them
            try:
                await pending
            except Exception:
                logger.exception("restoring the state of session %s… failed", claims.sid[:8])
        logger.info("adopted session %s…", claims.sid[:8])
        if self.on_adopted is not None:
            self.on_adopted(session_id, claims)
        return "adopted"

    async def _run_adopted(
        self,
        transport: SessionTransport,
        claims: SessionClaims,
        record: dict[str, Any],
        restoring: list[Awaitable[None]],
        *,
        task_status: TaskStatus[None],
    ) -> None:
        session_id = transport.mcp_session_id
        assert session_id is not None
        label = claims.sid[:8]
        try:
            async with transport.connect() as (read_stream, write_stream):
                dispatcher: JSONRPCDispatcher[TransportContext] = JSONRPCDispatcher(
                    read_stream, write_stream, raise_handler_exceptions=False, inline_methods=frozenset({"initialize"})
                )
                connection = Connection.for_loop(
                    dispatcher, session_id=session_id, protocol_version_hint=claims.protocol_version
                )
                if claims.params is not None:
                    connection.client_params = InitializeRequestParams.model_validate(claims.params, by_name=False)
                    connection.initialized.set()
                restoring.extend(self.state.restore(connection, record))
                task_status.started()
                # This frame lives as long as the session: keep nothing of the adoption (the unsealed
                # claims alone are ≈ 1 KiB of dicts and strings).
                del claims, record, restoring, task_status
                idle_scope = transport.idle_scope or anyio.CancelScope()
                with idle_scope:
                    await serve_connection(
                        self.app, dispatcher, connection=connection, lifespan_state=self.lifespan_state
                    )
                if idle_scope.cancelled_caught:
                    logger.info("adopted session %s… idle timeout", label)
        except Exception:
            logger.exception("adopted session %s… crashed", label)
        finally:
            await self.discard(session_id, transport)

    def park(self, session_id: str) -> bool:
        """Drop a session now, as its idle timeout would: only one with no request in flight and no
        GET stream open (True: it is being dropped; its next request adopts it again)."""
        transport = self.sessions.get(session_id)
        return transport is not None and park_if_idle(transport)

    def park_idle(self) -> int:
        """:meth:`park` every session that can be dropped now; how many."""
        return sum(self.park(session_id) for session_id in list(self.sessions))

    async def end(self, session_id: str) -> None:
        """A session ended elsewhere: close this replica's copy (its GET stream ends)."""
        transport = self.sessions.get(session_id)
        if transport is not None:
            await self.discard(session_id, transport)

    async def deliver(self, session_id: str, message: dict[str, Any]) -> bool:
        """Write a notification to the session's GET stream if this replica holds it."""
        transport = self.sessions.get(session_id)
        return isinstance(transport, SessionTransport) and await transport.deliver(message)

    async def broadcast(self, message: dict[str, Any]) -> int:
        """Write a notification to every GET stream this replica holds; returns how many."""
        delivered = 0
        for transport in list(self.sessions.values()):
            if isinstance(transport, SessionTransport) and await transport.deliver(message):
                delivered += 1
        return delivered

    async def delete(self, session_id: str, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve a ``DELETE``; once the session ended, end it everywhere: revoked here, in Redis, on the channel."""
        status = 0

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.handle_request(scope, receive, watch)
        claims = self.sealer.unseal(session_id) if 200 <= status < 300 else None
        if claims is None:
            return
        try:
            await self.revocations.revoke(claims)
        except Exception as exc:  # ended here and on the channel; a replica adopting it later will not know
            logger.warning("could not record the end of a session in Redis: %s", type(exc).__name__)
        await self.state.forget(claims)
        if self.fanout is not None:
            self.fanout.publish("r", {"i": session_id})

    async def ended_elsewhere(self, body: dict[str, Any]) -> None:
        """Fan-out ``r``: a session was deleted on another replica."""
        session_id = body.get("i")
        claims = self.sealer.unseal(session_id) if isinstance(session_id, str) else None
        if claims is not None and isinstance(session_id, str):
            self.revocations.remember(claims.sid, claims.issued_at + self.sealer.ttl)
            self.state.forget_here(claims.sid)
            await self.end(session_id)

    async def deliver_relayed(self, body: dict[str, Any]) -> None:
        """Fan-out ``s``: a notification for a session, made where its GET stream is not."""
        session_id, message = body.get("i"), body.get("m")
        if isinstance(session_id, str) and isinstance(message, dict):
            await self.deliver(session_id, message)
