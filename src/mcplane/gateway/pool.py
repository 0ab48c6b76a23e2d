"""Keep-alive HTTP/1.1 connections to one upstream endpoint, on asyncio transports and ``httptools``.

The lean lane's POSTs (:mod:`mcplane.gateway.lean`) go out here instead of through ``httpx``:
``httpx`` spends more CPU per request than the rest of a gateway hop. A :class:`Pool` keeps a
bounded number of connections per endpoint and reuses idle ones last-in first-out. A connection
goes back to the pool only when its response was read to the end and neither side asked to close
it; on any error, a partial read or a cancelled exchange it is closed. An idle connection the
upstream closed is noticed before the next request goes out on it and replaced. A read that waits
longer than :data:`READ_TIMEOUT` fails; one loop timer per connection keeps that limit for all its
waits (none is made or cancelled per request).

Failures are raised as the ``httpx`` transport errors the ``httpx`` lane raises for the same
failure (``ConnectError``, ``ConnectTimeout``, ``ReadTimeout``, ``RemoteProtocolError``,
``ReadError``), so the gateway reads them the same way (a transport failure: the replica is
unavailable). Anything the pool does not do (proxies, HTTP/2, credentials in the URL, another
event loop than asyncio's, no ``httptools``) stays on the ``httpx`` lane: :func:`raw_pool_for`
answers ``None`` then.
"""

from __future__ import annotations

import asyncio
import math
import ssl
from collections import deque
from collections.abc import AsyncIterator
from typing import Any, cast
from urllib.parse import urlsplit

import anyio
import httpx2

from mcplane.errors import UpstreamError

try:
    import httptools
except ImportError:  # pragma: no cover - the ``fast`` extra brings it
    httptools = None

__all__ = ["Pool", "raw_pool_for"]

available = httptools is not None
"""``httptools`` is installed (tests turn this off to run the ``httpx`` lane)."""

CONNECT_TIMEOUT = 30.0
READ_TIMEOUT = 300.0
"""The ``httpx`` lane's own limits (the SDK's defaults); the caller's deadline is usually shorter."""
MAX_CONNECTIONS = 100
MAX_IDLE = MAX_CONNECTIONS
"""Idle connections kept: all of them (a burst would otherwise open again what it just closed);
the upstream closes the ones it no longer wants, and the pool notices."""
_HIGH_WATER = 1 << 20
"""Unread body bytes past which the connection stops reading from the socket (until they are read)."""
MAX_ANSWER_BYTES = 16 * 1024 * 1024
"""Largest answer body read from an upstream; a larger one is a non-retryable ``upstream_error``."""


def answer_too_large(limit: int) -> UpstreamError:
    return UpstreamError(f"the upstream's answer is larger than {limit} bytes", details={"limit_bytes": limit})


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: a protocol fed by the loop, read by one exchange at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop, max_answer_bytes: int = MAX_ANSWER_BYTES) -> None:
        self.loop = loop
        self.max_answer_bytes = max_answer_bytes
        self.transport: asyncio.Transport | None = None
        self.parser: Any = httptools.HttpResponseParser(self) if httptools is not None else None
        self.closed = False
        self.waiter: asyncio.Future[None] | None = None
        self.error: Exception | None = None
        self.status = 0
        self.headers: dict[str, str] = {}
        self.head_done = False
        self.done = False
        self.keep_alive = False
        self.to_eof = False
        self.received = False
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.paused = False
        self.deadline = math.inf
        """When the wait in progress times out (the loop's clock; infinite while none is)."""
        self.timer: asyncio.TimerHandle | None = None
        """The connection's one read timer: armed by the first wait, kept across waits (see :meth:`_wait`)."""
        self.armed_at = math.inf
        """When :attr:`timer` fires."""

    # ---------------------------------------------------------------- the loop's side
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)  # uvloop's are not asyncio's classes

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            self.parser.feed_data(data)
        except Exception as exc:  # httptools' parser errors (an upgrade, a malformed message)
            self._fail(httpx2.RemoteProtocolError(f"malformed HTTP response: {exc}"))
            self.abort()
            return
        self._wake()

    def eof_received(self) -> bool:
        self._ended(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended(exc)

    def _ended(self, exc: Exception | None) -> None:
        self.closed = True
        self._disarm()
        if self.head_done and not self.done and self.to_eof and exc is None:
            self.done = True  # a body that runs to the end of the connection
        elif not self.done and self.error is None:
            if exc is not None:
                error: Exception = httpx2.ReadError(str(exc) or type(exc).__name__)
                error.__cause__ = exc
            elif not self.received:
                error = httpx2.RemoteProtocolError("Server disconnected without sending a response.")
            else:
                error = httpx2.RemoteProtocolError("peer closed connection without sending complete message body")
            self.error = error
        self._wake()

    # ---------------------------------------------------------------- httptools' callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        previous = self.headers.get(key)
        self.headers[key] = text if previous is None else f"{previous}, {text}"

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.head_done = True
        headers = self.headers
        self.to_eof = "content-length" not in headers and "chunked" not in headers.get("transfer-encoding", "").lower()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > _HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        self.done = True
        self.keep_alive = self.parser.should_keep_alive()  # the parser forgets it once the message is over

    # ---------------------------------------------------------------- the exchange's side
    def _fail(self, error: Exception) -> None:
        if self.error is None:
            self.error = error

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _timed_out(self) -> None:
        self._fail(httpx2.ReadTimeout("timed out waiting for the upstream's response"))
        self._wake()

    def _check_time(self) -> None:
        """The read timer fired: time out the wait in progress if its deadline has passed; else set
        the timer for that deadline; with no wait in progress, leave it unarmed (the next wait arms it)."""
        self.timer = None
        if self.waiter is None:
            return
        if self.loop.time() >= self.deadline:
            self._timed_out()
        else:  # a later wait than the one that armed it (or an early tick): its own deadline
            self.armed_at = self.deadline
            self.timer = self.loop.call_at(self.deadline, self._check_time)

    async def _wait(self) -> None:
        """Until the loop feeds the connection something; at most :data:`READ_TIMEOUT` (then
        ``ReadTimeout``). One timer serves every wait of the connection: a wait sets its deadline
        and arms the timer only when none is armed (or one armed for later), and a timer that
        fires before the deadline of the wait then in progress sets itself for it (a loop timer
        made and cancelled per wait cost more than the rest of the wait)."""
        if self.error is not None:
            raise self.error
        loop = self.loop
        waiter = self.waiter = loop.create_future()
        deadline = self.deadline = loop.time() + READ_TIMEOUT
        if self.timer is None or self.armed_at > deadline:  # (later only if READ_TIMEOUT was lowered)
            if self.timer is not None:
                self.timer.cancel()
            self.armed_at = deadline
            self.timer = loop.call_at(deadline, self._check_time)
        try:
            await waiter
        finally:
            self.waiter = None
            self.deadline = math.inf
        if self.error is not None:
            raise self.error

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def send(self, data: bytes) -> None:
        self.status, self.headers, self.head_done, self.done, self.received = 0, {}, False, False, False
        self.keep_alive = False
        assert self.transport is not None
        self.transport.write(data)

    async def head(self) -> None:
        while not self.head_done:
            await self._wait()
        if self.status < 200:
            raise httpx2.RemoteProtocolError(f"unexpected informational response {self.status}")

    async def chunk(self) -> bytes:
        """The next piece of the body; ``b""`` at its end."""
        while not self.chunks:
            if self.done:
                return b""
            await self._wait()
        data = self.chunks.popleft()
        self.buffered -= len(data)
        if self.paused and self.buffered <= _HIGH_WATER // 2 and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return data

    async def read(self) -> bytes:
        """The whole body (at most ``max_answer_bytes``), taken as it arrives so the socket never stalls."""
        if self.done and self.error is None:  # all of it is here already (the usual small answer)
            if self.buffered > self.max_answer_bytes:
                raise answer_too_large(self.max_answer_bytes)
            data = b"".join(self.chunks)
            self.chunks.clear()
            self.buffered = 0
            if self.paused and self.transport is not None:
                self.paused = False
                self.transport.resume_reading()
            return data
        parts: list[bytes] = []
        async for data in self.pieces():
            parts.append(data)
        return b"".join(parts)

    async def pieces(self) -> AsyncIterator[bytes]:
        """The body piece by piece; past ``max_answer_bytes`` in all, a non-retryable ``upstream_error``."""
        size = 0
        while data := await self.chunk():
            size += len(data)
            if size > self.max_answer_bytes:
                raise answer_too_large(self.max_answer_bytes)
            yield data

    @property
    def reusable(self) -> bool:
        return (
            self.done
            and not self.closed
            and self.error is None
            and not self.chunks
            and self.keep_alive
            and "close" not in self.headers.get("connection", "").lower()
        )

    def abort(self) -> None:
        self.closed = True
        self._disarm()
        if self.transport is not None:
            self.transport.abort()


class Pool:
    """Pooled keep-alive connections to the endpoint ``url`` (see the module doc)."""

    def __init__(
        self,
        url: str,
        tls: ssl.SSLContext | None,
        *,
        max_connections: int = MAX_CONNECTIONS,
        max_idle: int = MAX_IDLE,
    ) -> None:
        parts = urlsplit(url)
        self.secure = parts.scheme == "https"
        self.host = parts.hostname or ""
        default = 443 if self.secure else 80
        self.port = parts.port or default
        name = f"[{self.host}]" if ":" in self.host else self.host
        self.authority = name if self.port == default else f"{name}:{self.port}"
        self.target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.tls = tls if tls is not None else (ssl.create_default_context() if self.secure else None)
        self.max_connections = max_connections
        self.max_idle = max_idle
        self.idle: list[_Connection] = []
        self.open = 0
        """Connections open or being opened (idle ones included)."""
        self.opened = 0
        """Connections ever opened (a counter, for tests and diagnostics)."""
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._closed = False

    def _take(self) -> _Connection | None:
        idle = self.idle
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
            self._gone()
        return None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        while self.open >= self.max_connections:
            waiter = loop.create_future()
            self._waiting.append(waiter)
            try:
                with anyio.fail_after(CONNECT_TIMEOUT):
                    await waiter
            except TimeoutError:
                raise httpx2.PoolTimeout("no connection to the upstream came free in time") from None
            finally:
                if waiter in self._waiting:
                    self._waiting.remove(waiter)
            conn = self._take()
            if conn is not None:
                return conn
        self.open += 1
        self.opened += 1
        conn = _Connection(loop)
        try:
            with anyio.fail_after(CONNECT_TIMEOUT):
                await loop.create_connection(
                    lambda: conn,
                    self.host,
                    self.port,
                    ssl=self.tls,
                    server_hostname=self.host if self.tls is not None else None,
                )
        except TimeoutError:
            conn.abort()
            self._gone()
            raise httpx2.ConnectTimeout(f"connecting to {self.authority} timed out") from None
        except OSError as exc:  # refused, unreachable, unknown host, TLS (ssl.SSLError is an OSError)
            conn.abort()
            self._gone()
            raise httpx2.ConnectError(str(exc) or type(exc).__name__) from exc
        except BaseException:
            conn.abort()
            self._gone()
            raise
        return conn

    def _gone(self) -> None:
        self.open -= 1
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break

    async def request(self, head: bytes, body: bytes) -> _Connection:
        """Send ``head`` (the request line and headers, from :meth:`head`) and ``body``; the
        connection with the response's status and headers read. Give it back with :meth:`release`."""
        conn = self._take() or await self._connect()
        try:
            conn.send(head + body)
            await conn.head()
        except BaseException:
            self.release(conn, discard=True)
            raise
        return conn

    def release(self, conn: _Connection, *, discard: bool = False) -> None:
        """Back to the pool if the response was read whole on a connection both sides keep; else closed."""
        if discard or self._closed or not conn.reusable or len(self.idle) >= self.max_idle:
            conn.abort()
            self._gone()
            return
        self.idle.append(conn)
        if self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def head(self, headers: list[tuple[str, str]], length: int) -> bytes:
        """The request's head: ``POST`` to the endpoint with ``headers`` (names and values checked by
        the caller) and ``Content-Length: length``."""
        return self.prefix(headers) + b"content-length: %d\r\n\r\n" % length

    def prefix(self, headers: list[tuple[str, str]]) -> bytes:
        """:meth:`head` up to its ``Content-Length`` line (what requests with the same headers share)."""
        lines = [f"POST {self.target} HTTP/1.1\r\nhost: {self.authority}\r\n"]
        lines.extend(f"{name}: {value}\r\n" for name, value in headers)
        return "".join(lines).encode("latin-1")

    def close(self) -> None:
        """Close the idle connections; the ones in use close when released."""
        self._closed = True
        while self.idle:
            self.idle.pop().abort()
            self._gone()


def raw_pool_for(http: httpx2.AsyncClient, url: str, tls: ssl.SSLContext | None) -> Pool | None:
    """A :class:`Pool` for ``url`` when the raw lane can do what ``http`` would; else ``None``."""
    if not available:
        return None
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return None  # another event loop than asyncio's (trio)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or parts.username is not None or not parts.hostname:
        return None
    try:
        if http._transport_for_url(httpx2.URL(url)) is not http._transport:  # pyright: ignore[reportPrivateUsage]
            return None  # a proxy from the environment
    except Exception:
        return None
    return Pool(url, tls)
