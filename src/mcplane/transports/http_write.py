"""One write per fixed-length HTTP answer: the response head goes out with the body's first bytes.

uvicorn's httptools protocol writes a response's status line and headers when the app sends
``http.response.start`` and the body when it sends ``http.response.body``: two ``write`` system
calls, two TCP segments, and a client that wakes up for the head only to wait again for the
body. An answer that declares its ``Content-Length`` (every JSON answer here: the hot path's,
the SDK's JSON responses, the tier's refusals) cannot be used by the client before its body
anyway, so :func:`one_write_http_protocol` holds such a head back and writes it together with
the body, in one ``write``. The bytes on the wire are the same, in the same order.

What is not held: a head without ``Content-Length`` (chunked: SSE streams, whose first event
may come much later), a ``HEAD`` answer's (it has no body to wait for) and ``100 Continue``.
A held head goes out with the response's next write, or before its connection is closed (an app
that fails half-way); a client that went away in between gets nothing more, as before.

The same protocol tells the hot path when a request's client goes away without a task reading
``receive`` in the meantime (:func:`on_disconnect`): a cycle it made calls back from the
protocol's ``connection_lost`` exactly when uvicorn marks it disconnected (what its ``receive``
would then have answered with ``http.disconnect``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from uvicorn.config import HTTP_PROTOCOLS
from uvicorn.importer import import_from_string

__all__ = ["on_disconnect", "one_write_http_protocol"]

_LOST = "mcplane_lost"
"""The attribute a cycle of the one-write protocol carries: what to call when its client goes away."""


class _HeldHead:
    """The connection's transport as one response's cycle sees it: the head of a fixed-length
    answer waits and goes out joined with the next write (or before a close)."""

    __slots__ = ("_cycle", "_held", "transport")

    def __init__(self, transport: Any, cycle: Any) -> None:
        self.transport = transport
        self._cycle = cycle
        """The cycle, until it writes its head (then let go: the cycle holds this object)."""
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self.transport.write(held + data)
            return
        cycle = self._cycle
        if cycle is not None and cycle.response_started:  # its head (before it, only ``100 Continue``)
            self._cycle = None
            if cycle.chunked_encoding is False and cycle.scope["method"] != "HEAD":
                self._held = data
                return
        self.transport.write(data)

    def close(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if not self.transport.is_closing():
                self.transport.write(held)
        self.transport.close()

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    # No ``__getattr__`` fallback to the transport: a class with one has every attribute read
    # of its instances taken off the interpreter's fast path. uvicorn's cycle uses only these three.


@functools.cache
def _one_write_protocol(base: type[Any]) -> type[Any]:
    def on_headers_complete(self: Any) -> None:
        before = self.cycle
        base.on_headers_complete(self)
        made = self.cycle
        if made is not before and made is not None:
            made.transport = _HeldHead(made.transport, made)
            setattr(made, _LOST, None)

    def connection_lost(self: Any, exc: Exception | None) -> None:
        cycle = self.cycle
        base.connection_lost(self, exc)
        if cycle is not None and cycle.disconnected:
            lost = getattr(cycle, _LOST, None)
            if lost is not None:
                setattr(cycle, _LOST, None)
                lost()

    return type(
        f"OneWrite{base.__name__}",
        (base,),
        {"__module__": __name__, "on_headers_complete": on_headers_complete, "connection_lost": connection_lost},
    )


def on_disconnect(receive: Any, gone: Callable[[], None]) -> Callable[[], None] | None:
    """When ``receive`` is a request's own on a connection of the one-write protocol: call ``gone``
    once that request's client goes away (now, if it has already) and return what stops that; else
    ``None`` (the caller watches ``receive`` itself). A watch needs no task: uvicorn's
    ``connection_lost`` calls back, for the request it marks disconnected."""
    cycle = getattr(receive, "__self__", None)
    if cycle is None or _LOST not in getattr(cycle, "__dict__", ()):
        return None
    if cycle.disconnected:
        gone()
        return _nothing
    setattr(cycle, _LOST, gone)

    def stop() -> None:
        setattr(cycle, _LOST, None)

    return stop


def _nothing() -> None:
    pass


def one_write_http_protocol(http: str | type[Any]) -> type[Any] | str:
    """uvicorn's ``http=`` protocol (a name as its ``Config`` takes it, or a class) answering a
    fixed-length response in one write; anything but the httptools protocol is returned as it is."""
    base = import_from_string(HTTP_PROTOCOLS.get(http, http)) if isinstance(http, str) else http
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # httptools is not installed: uvicorn serves with h11
        return http
    if not (isinstance(base, type) and issubclass(base, HttpToolsProtocol)):
        return http
    return _one_write_protocol(base)
