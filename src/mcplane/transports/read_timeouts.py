"""Read timeouts and header limits for uvicorn's HTTP connections: a slow client (slow-loris)
is cut off, and so is one whose request headers are too large.

uvicorn bounds only the idle time between requests (``timeout_keep_alive``); a client that
sends its request headers or body a byte at a time, each byte just before that timer runs
out, holds a connection (and a file descriptor, and for a body a running request) for as
long as it likes. :func:`timed_http_protocol` subclasses uvicorn's HTTP protocol classes (h11
and httptools alike, with or without TLS) so that a connection is closed when

- the headers of a request are not complete ``header_timeout`` seconds after the connection
  opened or after the request's first byte arrived, or
- the body of a request is not complete ``body_timeout`` seconds after its headers were.

A client that sent part of a request gets ``408 Request Timeout`` with a JSON-RPC error body
(code ``timeout``) before the close, unless an answer is already on its way on the connection
(the app answered before the body was in, or a pipelined request waits behind an answer being
written): then the connection just closes, as does one that never sent a byte (like an idle
keep-alive connection). A request whose body timed out sees ``http.disconnect``, as if the
client had gone. Cut-offs are logged at INFO, at most one line per 10 s. The timers live on the
event loop: nothing runs per byte but a few attribute reads after each chunk the transport
delivers.

**Header limits.** uvicorn's httptools parser buffers request headers without bound (h11 has a
16 KiB default, httptools none), and this happens before any authentication. While a request's
headers are incomplete, the bytes and lines received for them are counted; past
``max_header_bytes`` or ``max_headers`` lines the client gets ``431 Request Header Fields Too
Large`` with a JSON-RPC error body (code ``invalid_request``) and the connection closes. So a
connection holds at most about ``max_header_bytes`` plus one read of buffered headers. The
WebSocket handshake is an HTTP request and is bounded the same way.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from typing import Any

from uvicorn.config import HTTP_PROTOCOLS
from uvicorn.importer import import_from_string

from mcplane.errors import InvalidRequest
from mcplane.jsonrpc import error_bytes

__all__ = [
    "DEFAULT_BODY_TIMEOUT",
    "DEFAULT_HEADER_TIMEOUT",
    "DEFAULT_MAX_HEADERS",
    "DEFAULT_MAX_HEADER_BYTES",
    "timed_http_protocol",
]

logger = logging.getLogger("mcplane.http")

DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_BODY_TIMEOUT = 30.0
DEFAULT_MAX_HEADER_BYTES = 32 * 1024
DEFAULT_MAX_HEADERS = 100


def _closing_answer(status: bytes, message: str, code: str) -> bytes:
    """A whole HTTP/1.1 answer with a JSON-RPC error body, written just before the connection closes."""
    body = error_bytes(None, InvalidRequest.jsonrpc_code, message, {"code": code})
    head = b"HTTP/1.1 %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
    return head % (status, len(body)) + body


REQUEST_TIMEOUT = _closing_answer(b"408 Request Timeout", "the request was not received in time", "timeout")
"""What a client that was too slow gets before the connection closes, when nothing else was answered."""
HEADERS_TOO_LARGE = _closing_answer(
    b"431 Request Header Fields Too Large", "request headers too large", "invalid_request"
)
"""What a client whose request headers are over the limits gets before the connection closes."""


class _ReadTimeouts:
    """Mixed in before a uvicorn HTTP protocol class (which provides ``transport``, ``cycle``, ``loop``)."""

    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    max_headers: int = DEFAULT_MAX_HEADERS
    on_refused: Any = None
    """Called with (status, reason) when a connection is refused here (metrics and the sampled log)."""
    transport: Any
    cycle: Any
    loop: asyncio.AbstractEventLoop

    _timer: asyncio.TimerHandle | None = None
    _phase: str | None = None
    _seen: Any = None
    """The request whose headers were seen last (uvicorn's ``RequestResponseCycle``)."""
    _header_bytes: int = 0
    _header_lines: int = 0
    _header_tail: bytes = b""
    """The last bytes of the previous chunk of headers (a blank line may be split across chunks)."""

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._arm(self.header_timeout, "idle")  # a connection that never sends a byte is closed too

    def data_received(self, data: bytes) -> None:
        starting = False
        if self._phase == "idle":
            self._phase = "headers"  # same timer: the time since the connection opened counts
        elif self._timer is None and not self._reading_body():
            # The first bytes of a new request: its header timer starts with them, once they are
            # parsed, and only if its headers are not all here (most requests come in one piece).
            self._phase = "headers"
            starting = True
        if self._phase == "headers" and self._over_header_limits(data):
            self._refuse_headers()  # the parser never sees these bytes
            return
        seen = self._seen
        super().data_received(data)  # type: ignore[misc]
        self._observe()
        if starting and self._timer is None:
            if self._seen is seen and not self._upgraded() and not self.transport.is_closing():
                self._arm(self.header_timeout, "headers")
            elif self._phase == "headers":
                self._phase = None

    def _over_header_limits(self, data: bytes) -> bool:
        """Count the header bytes and lines of the request being received, up to its blank line."""
        tail = self._header_tail + data
        # The first blank line: CRLF CRLF, or LF LF (which can only end it sooner if it starts
        # before the CRLF CRLF's second LF; the body after it is not searched).
        crlf = tail.find(b"\r\n\r\n")
        lf = tail.find(b"\n\n", 0, crlf + 3) if crlf >= 0 else tail.find(b"\n\n")
        ends = lf >= 0 or crlf >= 0
        end = (lf + 2 if lf >= 0 else crlf + 4) - len(self._header_tail) if ends else len(data)
        self._header_bytes += end
        self._header_lines += data.count(b"\n", 0, end)
        over = self._header_bytes > self.max_header_bytes or self._header_lines > self.max_headers + 1
        if ends:  # this request's headers are complete: the next request starts afresh
            self._header_bytes = self._header_lines = 0
            self._header_tail = b""
        else:
            self._header_tail = tail[-3:]
        return over

    def _refuse_headers(self) -> None:
        self._disarm()
        on_refused = type(self).on_refused  # through the class: a plain function must not bind to self
        if on_refused is not None:  # it counts the refusal and samples it in the log
            peer = self.transport.get_extra_info("peername")
            on_refused(431, "headers_too_large", str(peer[0]) if isinstance(peer, tuple) and peer else "")
        else:
            _log_cut_off(_peer(self.transport), "headers", None)
        if not self._answering():
            self.transport.write(HEADERS_TOO_LARGE)
        self.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        self._observe()  # h11 parses a pipelined request only now

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]

    def _reading_body(self) -> bool:
        seen = self._seen
        return seen is not None and seen.more_body and not seen.response_complete

    def _observe(self) -> None:
        """After the parser ran: a new request's headers stop the header timer; a complete body the body timer."""
        if self._upgraded():
            self._disarm()
            return
        cycle = self.cycle
        if cycle is not None and cycle is not self._seen:
            self._seen = cycle
            self._disarm()
            if self._reading_body():
                self._arm(self.body_timeout, "body")
        elif self._phase == "body" and not self._reading_body():
            self._disarm()

    def _upgraded(self) -> bool:
        """Handed over to the WebSocket protocol: its own pings watch the connection from now on."""
        get_protocol = getattr(self.transport, "get_protocol", None)
        return get_protocol is not None and get_protocol() is not self

    def _arm(self, seconds: float, phase: str) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, self._timed_out, phase)
        self._phase = phase

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._phase = None

    def _timed_out(self, phase: str) -> None:
        phase = self._phase or phase  # "idle" turned "headers" with the first byte
        self._timer = self._phase = None
        transport = self.transport
        if transport.is_closing() or self._upgraded():
            return
        if phase == "idle":  # nothing asked, nothing to answer: closed like an idle keep-alive connection
            logger.debug("closed a connection from %s: no request within %g s", _peer(transport), self.header_timeout)
            transport.close()
            return
        seconds = self.body_timeout if phase == "body" else self.header_timeout
        _log_cut_off(_peer(transport), phase, seconds)
        if not self._answering():
            transport.write(REQUEST_TIMEOUT)
        transport.close()

    def _answering(self) -> bool:
        """Whether an answer is on its way on this connection (a 408 written now would corrupt it)."""
        if getattr(self, "pipeline", None):  # httptools: requests queued behind one being answered
            return True
        cycle = self.cycle
        if cycle is None:
            return False
        if cycle is self._seen and self._reading_body():
            return bool(cycle.response_started)  # the app answered before the body was in
        return not cycle.response_complete


_LOG_INTERVAL = 10.0
_log_state: list[float] = [-math.inf, 0]
"""When a cut-off was last logged, and how many were not logged since: a flood of slow clients
makes one line per interval."""


def _log_cut_off(peer: str, phase: str, seconds: float | None) -> None:
    """``seconds``: the timeout that ran out; ``None``: the headers were over the size limits."""
    now = time.monotonic()
    if now < _log_state[0] + _LOG_INTERVAL:
        _log_state[1] += 1
        return
    more = f" ({int(_log_state[1])} more since the last such line)" if _log_state[1] else ""
    _log_state[:] = [now, 0]
    if seconds is None:
        logger.info("closed a connection from %s: its request headers were over the size limits%s", peer, more)
        return
    logger.info("closed a connection from %s: the request %s did not arrive within %g s%s", peer, phase, seconds, more)


def _peer(transport: Any) -> str:
    peer = transport.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else "a client"  # pyright: ignore[reportUnknownArgumentType]


@functools.cache
def _subclass(base: type[Any], **attributes: Any) -> type[Any]:
    return type(f"Timed{base.__name__}", (_ReadTimeouts, base), {"__module__": __name__, **attributes})


def timed_http_protocol(
    http: str | type[Any],
    *,
    header_timeout: float = DEFAULT_HEADER_TIMEOUT,
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
    max_headers: int = DEFAULT_MAX_HEADERS,
    on_refused: Any = None,
) -> type[Any]:
    """A uvicorn ``http=`` protocol class (a name as uvicorn's ``Config`` takes it, or a class)
    that closes connections whose request headers or body arrive too slowly, or whose headers are
    over ``max_header_bytes`` or ``max_headers``. ``on_refused(status, reason)`` is told of each."""
    if not (header_timeout > 0 and body_timeout > 0):
        raise ValueError("header_timeout and body_timeout must be positive")
    if not (max_header_bytes > 0 and max_headers > 0):
        raise ValueError("max_header_bytes and max_headers must be positive")
    base = import_from_string(HTTP_PROTOCOLS.get(http, http)) if isinstance(http, str) else http
    return _subclass(
        base,
        header_timeout=float(header_timeout),
        body_timeout=float(body_timeout),
        max_header_bytes=int(max_header_bytes),
        max_headers=int(max_headers),
        on_refused=on_refused,
    )
