"""WebSocket transport, server and client, following the SEP-1288 proposal.

Subprotocol ``mcp``; one JSON-RPC message per text frame; keepalive pings; close codes that say
what happened: 1000 normal, 1001 server going away, 1003 binary frame, 1008 policy (Host/Origin,
missing subprotocol), 1009 message too big, 1011 internal error, 1013 not ready.
A connection serves either protocol era, decided by the client's first request, like stdio.
Every call on a connection carries the connection's ASGI scope as its request (:class:`Handshake`),
so it knows its peer address and handshake headers (user agent, trace context) as an HTTP call does.
Frames are routed by :class:`~mcplane.transports.pump.StreamPump`, as stdio lines are.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
from mcp.server.runner import serve_dual_era_loop
from mcp.shared.message import SessionMessage
from starlette.types import Message, Receive, Scope, Send

from mcplane.context import ANONYMOUS, Principal
from mcplane.fanout import PlaneBus
from mcplane.sdk_adapter.mcpserver import lowlevel_server, subscription_bus
from mcplane.sdk_adapter.streams import create_context_streams
from mcplane.transports.framing import decode_frame, encode_message
from mcplane.transports.pump import StreamPump
from mcplane.transports.refusals import peer_of

if TYPE_CHECKING:
    from ssl import SSLContext

    from mcplane.transports.http import HTTPApp

__all__ = ["SUBPROTOCOL", "Connection", "Handshake", "serve_websocket", "websocket_client"]

logger = logging.getLogger("mcplane.websocket")

SUBPROTOCOL = "mcp"
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_UNSUPPORTED = 1003
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011
CLOSE_TRY_LATER = 1013
DRAIN_SECONDS = 5.0
"""How long a connection closing at the end of a drain waits for the answers it owes."""


@dataclass(frozen=True, slots=True)
class Handshake:
    """The request of every call on a connection, as the SDK hands it to the call's context.

    Only the ASGI ``scope`` (peer, handshake headers, principal), which is what
    :attr:`mcplane.Context.scope` reads: no ``headers`` attribute, so nothing takes the handshake's
    headers for the per-request routing headers of Streamable HTTP.
    """

    scope: Scope


class Connection:
    """An open connection as the HTTP tier sees it: set :attr:`closing` to have it close in order."""

    __slots__ = ("closing",)

    def __init__(self) -> None:
        self.closing = anyio.Event()


async def serve_websocket(app: HTTPApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Serve one WebSocket connection (the ASGI scope has already passed the Host/Origin check)."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    if SUBPROTOCOL not in scope.get("subprotocols", []):
        # Accept (selecting no subprotocol) only to say why in a close frame: a refused handshake
        # would reach the client as a bare 403 with no reason.
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": CLOSE_POLICY, "reason": "subprotocol 'mcp' required"})
        return
    await send({"type": "websocket.accept", "subprotocol": SUBPROTOCOL})
    if app._manager is None or app.draining:
        reason = "server shutting down" if app.draining else "server not ready"
        await send({"type": "websocket.close", "code": CLOSE_TRY_LATER, "reason": reason})
        return
    if len(app.websockets) >= app.options.max_websockets:
        app.refused(CLOSE_TRY_LATER, "too_many_websockets", peer_of(scope))
        await send({"type": "websocket.close", "code": CLOSE_TRY_LATER, "reason": "too many connections; retry later"})
        return

    plane = app.plane
    limit = app.options.max_body_bytes
    lowlevel = lowlevel_server(plane.sdk)
    send_lock = anyio.Lock()
    close: dict[str, Any] = {"code": CLOSE_NORMAL, "reason": ""}
    peer_gone = False
    connection = Connection()

    async def send_text(text: str) -> None:
        nonlocal peer_gone
        if peer_gone:
            return  # keep draining what the protocol layer still writes, to nobody
        async with send_lock:
            try:
                await send({"type": "websocket.send", "text": text})
            except OSError:  # the ASGI server's ClientDisconnected: the client left mid-answer
                peer_gone = True
                close["code"] = None

    async def write_fast(payload: bytes) -> None:
        await send_text(payload.decode())

    principal = scope.get("mcplane.principal")
    pump = StreamPump(
        send_text,
        write_fast,
        fast=app.fast,
        principal=principal if isinstance(principal, Principal) else ANONYMOUS,
        scope=scope,
        request_context=Handshake(scope),
    )
    idle_timeout = app.options.ws_idle_timeout
    bus = subscription_bus(plane.sdk)
    remove_sink = bus.add_sink(pump.notify_legacy) if isinstance(bus, PlaneBus) else None

    async def read_frame() -> str | None:
        while True:
            incoming: Message | None = None
            with anyio.move_on_after(idle_timeout):
                incoming = await receive()
            if incoming is None:
                if pump.unanswered.pending:  # hot-path calls are counted there too
                    continue  # a call (or a subscription) is open: the client waits, it is not idle
                close.update(code=CLOSE_NORMAL, reason="idle")
                return None
            if incoming["type"] == "websocket.disconnect":
                close["code"] = None
                return None
            text = incoming.get("text")
            if text is None:
                close.update(code=CLOSE_UNSUPPORTED, reason="binary frames are not supported")
                return None
            if len(text) > limit // 4 and len(text.encode()) > limit:  # a char is at most 4 bytes
                close.update(code=CLOSE_TOO_BIG, reason="message too big")
                return None
            return text

    async def close_when_drained(done: anyio.CancelScope) -> None:
        # The end of a drain: the calls are done; write the answers owed, then say goodbye.
        await connection.closing.wait()
        await pump.unanswered.settled(DRAIN_SECONDS)
        close.update(code=CLOSE_GOING_AWAY, reason="server shutting down")
        done.cancel()

    app.websockets.add(connection)
    try:
        async with anyio.create_task_group() as outer:
            outer.start_soon(close_when_drained, outer.cancel_scope)
            async with anyio.create_task_group() as tg:
                pump.bind(tg)
                tg.start_soon(pump.write_all)

                async def serve() -> None:
                    await serve_dual_era_loop(
                        lowlevel,
                        pump.read_stream,
                        pump.write_stream,
                        lifespan_state=plane._open,
                        init_options=lowlevel.create_initialization_options(),
                    )

                tg.start_soon(serve)
                await pump.read_all(read_frame)
            outer.cancel_scope.cancel()  # the connection ended on its own: no drain to wait for
    except Exception:
        logger.exception("websocket connection failed")
        close.update(code=CLOSE_INTERNAL, reason="internal error")
    finally:
        if remove_sink is not None:
            remove_sink()
        app.websocket_closed(connection)
    if close["code"] is not None:
        try:
            await send({"type": "websocket.close", "code": close["code"], "reason": close["reason"]})
        except Exception:  # the peer may already be gone; nothing more to tell it
            logger.debug("close frame not delivered")


@asynccontextmanager
async def websocket_client(
    url: str,
    *,
    headers: dict[str, str] | None = None,
    max_size: int = 4 * 1024 * 1024,
    ping_interval: float | None = 20.0,
    open_timeout: float = 10.0,
    ssl: SSLContext | None = None,
) -> AsyncGenerator[tuple[Any, Any]]:
    """Connect to a WebSocket MCP endpoint; yields ``(read_stream, write_stream)`` for an SDK client.

    Usable as a transport of the official SDK's ``mcp.Client``: ``Client(websocket_client(url))``.
    ``ssl``: the TLS context for a ``wss://`` URL (see :func:`mcplane.tls.client_context`); by
    default the server is verified against the system's CAs with a context shared by every
    connection.
    """
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    from mcplane.errors import ConfigError
    from mcplane.tls import client_context

    if not url.startswith("wss://"):
        if ssl is not None:
            raise ConfigError("ssl= applies to wss:// URLs only")
    elif ssl is None:
        ssl = client_context()
    tls: dict[str, Any] = {} if ssl is None else {"ssl": ssl}

    read_writer, read_stream = create_context_streams[SessionMessage | Exception](32)
    write_stream, write_reader = create_context_streams[SessionMessage](32)
    try:
        async with connect(
            url,
            subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
            additional_headers=headers,
            max_size=max_size,
            ping_interval=ping_interval,
            open_timeout=open_timeout,
            **tls,
        ) as ws:

            async def reader() -> None:
                async with read_writer:
                    try:
                        async for frame in ws:
                            decoded = decode_frame(frame)
                            if isinstance(decoded, str):
                                logger.warning("server sent an undecodable frame: %s", decoded)
                                continue
                            await read_writer.send(decoded)
                    except ConnectionClosed:
                        return

            async def writer() -> None:
                async with write_reader:
                    async for outgoing in write_reader:
                        try:
                            await ws.send(encode_message(outgoing))
                        except ConnectionClosed:
                            return

            async with anyio.create_task_group() as tg:
                tg.start_soon(reader)
                tg.start_soon(writer)
                try:
                    yield read_stream, write_stream
                finally:
                    tg.cancel_scope.cancel()
    finally:
        # A failed connect leaves them unused: close all four ends either way.
        for stream in (read_writer, read_stream, write_stream, write_reader):
            stream.close()
