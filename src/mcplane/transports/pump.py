"""The message pump of a stream connection (stdio lines, WebSocket text frames).

A stream transport differs from another only in how a frame is read and written and in what
ends the input (end of file, a disconnect, an idle or oversize frame, a binary frame). What
happens between is the same and lives here: decode each frame (:mod:`mcplane.transports.framing`),
answer what is not a JSON-RPC message with an error frame and keep reading, hand plain
``tools/call`` requests to the hot path (:mod:`mcplane.transports.stream_fast`) and the rest
to the SDK server through a pair of message streams, write the server's answers back, and keep
count of the requests still owed an answer (:class:`Unanswered`) so a transport can let them
finish before it stops.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, cast

import anyio
import anyio.abc
import orjson
from mcp.shared.message import ServerMessageMetadata, SessionMessage
from mcp_types import JSONRPCError, JSONRPCMessage, JSONRPCNotification, JSONRPCRequest, JSONRPCResponse, RequestId

from mcplane.context import ANONYMOUS, Principal
from mcplane.fastpath import FastPath
from mcplane.sdk_adapter.eligibility import opens_modern
from mcplane.sdk_adapter.streams import create_context_streams
from mcplane.transports.framing import PARSE_ERROR_FRAME, decode_value, encode_message
from mcplane.transports.stream_fast import StreamFastPath

__all__ = ["Decoded", "FrameReader", "FrameWriter", "StreamPump", "Unanswered"]


class Decoded:
    """A frame :meth:`StreamPump.take_now` decoded and the hot path did not take: the rest of its
    :meth:`StreamPump.take` is still to do."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


_UNPARSABLE = object()

FrameReader = Callable[[], Awaitable["str | bytes | Decoded | None"]]
"""The next frame of the input, or ``None`` once the input has ended (the reader knows why)."""

FrameWriter = Callable[[str], Awaitable[None]]
"""Write one frame of text (a line without its newline, a WebSocket text frame)."""

STREAM_BUFFER = 32
"""Messages queued each way between the pump and the SDK server."""


class StreamPump:
    """One connection's plumbing between frames and the SDK server's message streams.

    ``read_stream``/``write_stream`` are the ends the SDK server runs on. :meth:`read_all` and
    :meth:`write_all` are the two loops a transport starts (with how it reads and writes a
    frame); :meth:`bind` gives the hot path the task group its calls run in.
    ``write_bytes`` writes a frame the hot path serialized itself (bytes, to skip a decode).
    ``request_context``: the request every message handed to the server carries in its metadata
    (the WebSocket handshake, so each call knows its peer and headers).
    """

    def __init__(
        self,
        write: FrameWriter,
        write_bytes: Callable[[bytes], Awaitable[None]],
        *,
        fast: FastPath | None = None,
        principal: Principal = ANONYMOUS,
        scope: Mapping[str, Any] | None = None,
        request_context: object | None = None,
    ) -> None:
        self.write = write
        self.request_context = request_context
        self.unanswered = Unanswered()
        self.read_writer, self.read_stream = create_context_streams[SessionMessage | Exception](STREAM_BUFFER)
        self.write_stream, self.write_reader = create_context_streams[SessionMessage](STREAM_BUFFER)
        self.hot: StreamFastPath | None = None
        self._era: str | None = None
        self.legacy_ready = False
        """The connection is a 2025-11-25 session past ``notifications/initialized``: it may be
        sent notifications nobody asked for (list changes), as its era expects."""
        if fast is not None:
            self.hot = StreamFastPath(fast, write_bytes, principal=principal, scope=scope)
            self.hot.on_done = self.unanswered.forget_id

    def bind(self, task_group: anyio.abc.TaskGroup) -> None:
        """Run hot-path calls in ``task_group`` (they outlive the frame that asked for them)."""
        if self.hot is not None:
            self.hot.bind(task_group)

    async def read_all(self, read: FrameReader) -> None:
        """Take every frame ``read`` gives; the server's input ends when ``read`` returns ``None``."""
        async with self.read_writer:
            while (frame := await read()) is not None:
                await self.take(frame)

    def take_now(self, frame: str | bytes) -> Decoded | None:
        """The part of :meth:`take` that never waits: decode ``frame`` and offer it to the hot path.

        ``None`` when the hot path took it; otherwise what to hand to :meth:`take` for the rest
        (an error answer or the SDK server). A transport that calls this as the bytes arrive
        starts a hot-path call without a hop through its reading task.
        """
        try:
            raw = orjson.loads(frame)
        except orjson.JSONDecodeError:
            return Decoded(_UNPARSABLE)
        if self.legacy_ready is False and isinstance(raw, dict):
            self._learn_era(cast("dict[str, Any]", raw))
        if self.hot is not None and self.hot.offer(raw):
            self.unanswered.add_id(raw["id"])
            return None
        return Decoded(raw)

    async def take(self, frame: str | bytes | Decoded) -> None:
        """Route one frame: an error answer, the hot path, or the SDK server."""
        left = frame if isinstance(frame, Decoded) else self.take_now(frame)
        if left is None:
            return
        raw = left.value
        if raw is _UNPARSABLE:
            await self.write(PARSE_ERROR_FRAME)
            return
        decoded = decode_value(raw)
        if isinstance(decoded, str):
            await self.write(decoded)
            return
        self.unanswered.read(decoded.message)
        if self.request_context is not None:
            metadata = ServerMessageMetadata(request_context=self.request_context)
            decoded = SessionMessage(decoded.message, metadata=metadata)
        await self.read_writer.send(decoded)

    def _learn_era(self, raw: dict[str, Any]) -> None:
        method = raw.get("method")
        if self._era is None:
            if "id" in raw and isinstance(method, str):
                self._era = "modern" if opens_modern(method, raw.get("params")) else "legacy"
        elif self._era == "legacy" and method == "notifications/initialized":
            self.legacy_ready = True

    async def notify_legacy(self, message: dict[str, Any]) -> bool:
        """Write ``message`` (a notification) if this connection is an initialized 2025-11-25
        session; a 2026-07-28 connection hears of changes only through ``subscriptions/listen``."""
        if not self.legacy_ready:
            return False
        await self.write(orjson.dumps(message).decode())
        return True

    async def write_all(self) -> None:
        """Write every message the server sends until it closes its end."""
        async with self.write_reader:
            async for outgoing in self.write_reader:
                if self.hot is not None:
                    self.hot.observe_outbound(outgoing.message)
                await self.write(encode_message(outgoing))
                self.unanswered.written(outgoing.message)


class Unanswered:
    """The ids of requests read from the client and not answered yet."""

    def __init__(self) -> None:
        self._ids: set[RequestId] = set()
        self._quiet: anyio.Event | None = None

    def read(self, message: JSONRPCMessage) -> None:
        if isinstance(message, JSONRPCRequest):
            self._ids.add(message.id)
        elif isinstance(message, JSONRPCNotification) and message.method == "notifications/cancelled":
            # A cancelled request is never answered (the spec forbids it): stop waiting for it.
            self._forget((message.params or {}).get("requestId"))

    def add_id(self, request_id: RequestId) -> None:
        self._ids.add(request_id)

    def forget_id(self, request_id: RequestId) -> None:
        self._forget(request_id)

    @property
    def pending(self) -> bool:
        """Whether a request is still waiting for its answer."""
        return bool(self._ids)

    def written(self, message: JSONRPCMessage) -> None:
        if isinstance(message, JSONRPCResponse | JSONRPCError):
            self._forget(message.id)

    def _forget(self, request_id: Any) -> None:
        self._ids.discard(request_id)
        if not self._ids and self._quiet is not None:
            self._quiet.set()

    async def settled(self, grace: float) -> None:
        """Return once every request read so far has its answer written, or after ``grace`` seconds."""
        with anyio.move_on_after(grace):
            while self._ids:
                self._quiet = anyio.Event()
                await self._quiet.wait()
