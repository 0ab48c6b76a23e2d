"""stdio transport: newline-delimited JSON-RPC over the process's stdin and stdout.

While serving, file descriptor 1 points at stderr so a stray ``print`` in a tool cannot corrupt
the protocol stream; the protocol writes to a private duplicate of the original stdout. A line
that is not a JSON-RPC message gets an error answer instead of being dropped. What happens to
a line once read is :class:`~mcplane.transports.pump.StreamPump`'s; this module reads and writes lines.
"""

from __future__ import annotations

import asyncio
import os
import select
import stat
import sys
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import IO, Any, cast

import anyio

from mcplane.context import ANONYMOUS, Principal
from mcplane.errors import ConfigError, MCPlaneError
from mcplane.fastpath import FastPath
from mcplane.sdk_adapter.mcpserver import lowlevel_server, subscription_bus
from mcplane.transports.framing import error_frame
from mcplane.transports.pump import Decoded, StreamPump

__all__ = ["serve_stdio", "stdio_streams"]

MAX_LINE_BYTES = 4 * 1024 * 1024
DRAIN_SECONDS = 5.0
"""How long a stopping transport waits for queued answers to be written."""
EOF_GRACE_SECONDS = 30.0
"""How long, after the end of input, requests already read may take to be answered."""
TOO_LARGE_FRAME = error_frame(None, -32600, "message too large", "invalid_request")

_TOO_LARGE = object()
"""A line over the limit was dropped: answer it with ``TOO_LARGE_FRAME``."""


class _Failed:
    """Taking a line as it arrived raised: the reading task raises it (the transport fails, as
    it would had the reading task taken the line itself)."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


class Lines(asyncio.Protocol):
    """The input cut into lines as its bytes arrive (newline-delimited, blank lines skipped).

    Once ``direct`` is set, a complete line is given to ``take_now`` (the pump's
    :meth:`~mcplane.transports.pump.StreamPump.take_now`) in the callback that read it: a
    hot-path call starts in the loop iteration its bytes arrived in, without waking a reading
    task first. What ``take_now`` leaves (anything for the SDK server, an error answer), and
    every line after it until the reading task has caught up, waits for that task (:meth:`next`),
    so lines are still taken in the order they came. A line longer than ``limit`` bytes is
    dropped up to its newline and answered ``message too large``. Reading pauses while more than
    twice ``limit`` bytes wait, and resumes once no more than ``limit`` do.
    """

    def __init__(self, limit: int, take_now: Callable[[bytes], Decoded | None]) -> None:
        self.limit = limit
        self.take_now = take_now
        self.direct = False
        self.eof = False
        self._partial = bytearray()
        self._discarding = False
        self._waiting: deque[tuple[object, int]] = deque()
        self._queued = 0
        self._busy = False
        self._paused = False
        self._transport: asyncio.ReadTransport | None = None
        self._wakeup: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast("asyncio.ReadTransport", transport)

    def data_received(self, data: bytes) -> None:
        if self.eof:
            return
        start = 0
        while (end := data.find(b"\n", start)) >= 0:
            if self._discarding:
                self._discarding = False
                self._put(_TOO_LARGE, 0)
            elif self._partial:
                self._partial += memoryview(data)[start:end]
                line = bytes(self._partial)
                self._partial.clear()
                self._line(line)
            else:
                self._line(data[start:end])
            start = end + 1
        if start < len(data) and not self._discarding:
            self._partial += memoryview(data)[start:]
            if len(self._partial) > self.limit:
                self._partial.clear()
                self._discarding = True

    def eof_received(self) -> bool | None:
        self.feed_eof()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and not self.eof:
            self._put(_Failed(exc), 0)
        self.feed_eof()

    def feed_eof(self) -> None:
        """End the input: a last line without its newline is still taken."""
        if self.eof:
            return
        if self._discarding:
            self._discarding = False
            self._put(_TOO_LARGE, 0)
        elif self._partial:
            line = bytes(self._partial)
            self._partial.clear()
            self._line(line)
        self.eof = True
        self._wake()

    def _line(self, line: bytes) -> None:
        if len(line) > self.limit:
            self._put(_TOO_LARGE, 0)
        elif not line.strip():
            return
        elif self.direct and not self._busy and not self._waiting:
            try:
                left = self.take_now(line)
            except Exception as exc:
                self._put(_Failed(exc), 0)
                return
            if left is not None:
                self._put(left, len(line))
        else:
            self._put(line, len(line))

    def _put(self, item: object, size: int) -> None:
        self._waiting.append((item, size))
        self._queued += size
        if self._queued > 2 * self.limit and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()
        self._wake()

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    async def next(self) -> object:
        """The next item for the reading task: a line, a decoded frame, a marker; ``None`` at the end."""
        self._busy = False
        while not self._waiting:
            if self.eof:
                return None
            self._wakeup = asyncio.get_running_loop().create_future()
            try:
                await self._wakeup
            finally:
                self._wakeup = None
        item, size = self._waiting.popleft()
        self._queued -= size
        if self._paused and self._queued <= self.limit and self._transport is not None and not self.eof:
            self._paused = False
            self._transport.resume_reading()
        self._busy = True
        return item


AddSink = Callable[[Callable[[dict[str, Any]], Awaitable[Any]]], Callable[[], None]]
"""Registers a connection's notification writer with the plane's bus; returns its remover."""


@asynccontextmanager
async def stdio_streams(
    stdin: IO[bytes] | None = None,
    stdout: IO[bytes] | None = None,
    *,
    max_line_bytes: int = MAX_LINE_BYTES,
    fast: FastPath | None = None,
    principal: Principal = ANONYMOUS,
    stop: anyio.Event | None = None,
    add_sink: AddSink | None = None,
) -> AsyncGenerator[tuple[Any, Any]]:
    """Yield ``(read_stream, write_stream)`` of SessionMessages over binary stdin/stdout.

    With ``fast``, plain ``tools/call`` requests are answered on mcplane's hot path and never
    reach the streams (see :mod:`mcplane.transports.stream_fast`). Setting ``stop`` ends the
    input as if stdin had closed: requests already read are answered, then the streams end.
    ``add_sink`` (the plane bus's :meth:`~mcplane.fanout.PlaneBus.add_sink`) lets list changes
    reach a 2025-11-25 session on this connection as notifications.
    """
    restore: int | None = None
    private: int | None = None
    if stdout is None:
        sys.stdout.flush()
        private = os.dup(1)
        restore = os.dup(1)
        os.dup2(2, 1)
        stdout = os.fdopen(private, "wb", buffering=0, closefd=False)
    source = stdin if stdin is not None else sys.stdin.buffer if sys.stdin is not None else None
    out = stdout

    async def write_line(text: str) -> None:
        # Pipes to a client are written whole and fast; a blocking write here is what the
        # official SDK's thread-hop write costs without the hop.
        _write_all(out, text.encode() + b"\n")

    async def write_fast(payload: bytes) -> None:
        _write_all(out, payload + b"\n")

    pump = StreamPump(write_line, write_fast, fast=fast, principal=principal)
    lines = Lines(max_line_bytes, pump.take_now)
    kind = _input_kind(source)
    pipe = await _connect_stdin(source, lines) if kind == "loop" and source is not None else None
    if kind == "none":
        lines.feed_eof()  # no standard input at all (descriptor 0 closed): at its end already
    remove_sink = add_sink(pump.notify_legacy) if add_sink is not None else None

    async def read_line() -> bytes | Decoded | None:
        while True:
            item = await lines.next()
            if item is None:
                # End of input. Requests already read are answered before the
                # protocol layer sees the end (it would abandon them unanswered).
                await pump.unanswered.settled(EOF_GRACE_SECONDS)
                return None
            if item is _TOO_LARGE:
                await write_line(TOO_LARGE_FRAME)
                continue
            if isinstance(item, _Failed):
                raise item.error
            return cast("bytes | Decoded", item)

    written_all = anyio.Event()
    # The writer outlives a cancelled caller (SIGTERM, a cancelled scope) long enough to drain.
    writer_scope = anyio.CancelScope(shield=True)

    async def writer() -> None:
        try:
            with writer_scope:
                await pump.write_all()
        finally:
            written_all.set()

    async def stop_reading(stop: anyio.Event) -> None:
        await stop.wait()
        if isinstance(pipe, asyncio.ReadTransport):
            pipe.pause_reading()
        lines.feed_eof()  # a regular file's feeder sees this and stops

    try:
        async with anyio.create_task_group() as tg:
            pump.bind(tg)
            lines.direct = True  # the hot path can start calls now: take lines as they arrive
            if kind == "thread" and source is not None:
                tg.start_soon(_feed_from_file, source, lines)
            if stop is not None:
                tg.start_soon(stop_reading, stop)
            tg.start_soon(pump.read_all, read_line)
            tg.start_soon(writer)
            try:
                yield pump.read_stream, pump.write_stream
            finally:
                # Answers already queued (the last replies, the errors for abandoned requests)
                # still go out before the transport stops, even when stopping by cancellation.
                with anyio.move_on_after(DRAIN_SECONDS, shield=True):
                    await pump.read_stream.aclose()
                    await pump.write_stream.aclose()
                    await written_all.wait()
                writer_scope.cancel()
                tg.cancel_scope.cancel()
    finally:
        if remove_sink is not None:
            remove_sink()
        if pipe is not None:
            pipe.close()
        if restore is not None:
            os.dup2(restore, 1)
            os.close(restore)
        if private is not None:
            os.close(private)


def _input_kind(source: IO[bytes] | None) -> str:
    """How to read the input: ``loop`` for a pipe, socket or terminal (the event loop watches it);
    ``thread`` for anything the loop cannot watch: a regular file (``mcplane run app.py <
    requests.jsonl``), ``/dev/null`` and other devices; ``none`` when there is no input at all."""
    if source is None:
        return "none"
    try:
        fd = source.fileno()
        mode = os.fstat(fd).st_mode
    except (OSError, ValueError):
        return "none"
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(fd):
        return "loop"
    return "thread"


async def _connect_stdin(stdin: IO[bytes], lines: Lines) -> asyncio.BaseTransport:
    """Read a pipe, socket or terminal through the event loop."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.connect_read_pipe(lambda: lines, stdin)
    return transport


async def _feed_from_file(stdin: IO[bytes], lines: Lines) -> None:
    fd = stdin.fileno()
    while chunk := await anyio.to_thread.run_sync(os.read, fd, 65536):
        if lines.eof:  # the input was stopped (``stop``) while reading
            return
        lines.data_received(chunk)
    lines.feed_eof()


def _write_all(out: IO[bytes], data: bytes) -> None:
    """Write every byte, even to a non-blocking descriptor that takes a little at a time."""
    view = memoryview(data)
    while view:
        try:
            # A non-blocking raw file answers None (typed as int) when it would block.
            written = cast("int | None", out.write(view))
        except BlockingIOError as exc:
            written = exc.characters_written
        if written is not None and written >= len(view):
            break
        view = view[written or 0 :]
        select.select([], [out.fileno()], [])
    out.flush()


async def serve_stdio(plane: Any, *, stop: anyio.Event | None = None) -> None:
    """Serve a Plane over stdio until stdin closes (or ``stop`` is set: see :func:`stdio_streams`).

    With ``auth`` configured, the session runs as the principal of ``$MCPLANE_TOKEN`` (verified
    like an HTTP bearer token) or the configured local principal; a bad token stops the start.
    """
    from mcplane.auth import current_principal, principal_from_env
    from mcplane.fanout import PlaneBus

    lowlevel = lowlevel_server(plane.sdk)
    async with plane.lifespan():
        principal = ANONYMOUS
        if plane.config.auth is not None:
            try:
                principal = await principal_from_env(plane.config.auth, plane.layers.authenticator)
            except MCPlaneError as exc:
                raise ConfigError(f"stdio authentication failed: {exc.message}") from None
        current_principal.set(principal)
        bus = subscription_bus(plane.sdk)
        add_sink = bus.add_sink if isinstance(bus, PlaneBus) else None
        async with stdio_streams(fast=plane.fast, principal=principal, stop=stop, add_sink=add_sink) as (
            read_stream,
            write_stream,
        ):
            await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())
