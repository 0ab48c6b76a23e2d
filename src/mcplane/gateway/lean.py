"""The lean outbound path: a request to a Streamable HTTP upstream, without the SDK client.

The official SDK client (``mcp.Client``) routes every request through its dispatcher, memory
streams, a task per POST and pydantic models of every JSON-RPC envelope; for the common call that
is most of a gateway hop's cost. A :class:`LeanLane` belongs to one SDK connection of an HTTP
endpoint and sends a request itself (:meth:`LeanLane.send`: ``tools/call``, ``prompts/get``,
``resources/read``, ``completion/complete``, ``tasks/*``, ...), with the base headers and upstream
credentials of the ``httpx`` client the SDK transport uses, the same TLS context and the same
reading of a proxy's 502/503/504 page (:func:`~mcplane.client._connection.gateway_failure`), in the
**same** session. The POST goes out on the lane's own keep-alive pool (:mod:`mcplane.gateway.pool`,
asyncio transports and ``httptools``: ``httpx`` costs more CPU per request than the rest of the
hop); on that ``httpx`` client when the pool cannot (no ``httptools``, a proxy from the
environment, a header value only ``httpx`` should judge):

* the request comes stamped by the SDK session's own stamp (2026-07-28: the ``_meta`` envelope and
  ``MCP-Protocol-Version``/``Mcp-Method``/``Mcp-Name`` headers; 2025-11-25: the protocol-version
  header; see :mod:`mcplane.gateway.forward`), is sent with the session id the SDK's
  ``initialize`` got, plus the call's identity headers;
* the answer is read as the SDK's transport reads it, and every failure becomes the exception the
  SDK's transport would have produced (``Failed to parse ...``, ``Server returned an error
  response``, ``Session terminated``, ``Unexpected content type ...``, a transport error), so the
  gateway's breaker, retries and error codes see the same thing on either path; the raw result
  is shaped by :mod:`mcplane.gateway.forward` as the SDK would;
* an ``text/event-stream`` answer is read event by event, in the caller's task: an upstream's
  question on it is answered through the SDK session's callbacks (which ask the caller, see
  :mod:`mcplane.gateway.relay`), a log message and the request's progress go to the caller, a
  ``*/list_changed`` notification wakes the endpoint's supervisor;
* a caller that cancels aborts the POST; on a 2025-11-25 session the upstream is also sent
  ``notifications/cancelled`` (``reason: "caller cancelled"``), as the SDK's dispatcher does;
* a redirect hands the request to the SDK client (:class:`HandOver`: its redirect rules).

stdio and WebSocket endpoints use the SDK client, and so does every request of an upstream
configured with ``lean: false``.
"""

from __future__ import annotations

import codecs
import itertools
import logging
import ssl
import zlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import anyio
import httpx2
from httpx2._decoders import LineDecoder  # pyright: ignore[reportPrivateImportUsage]
from mcp.client.session import ClientRequestContext
from mcp.shared.dispatcher import CallOptions
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import MCP_PROTOCOL_VERSION_HEADER
from mcp_types import (
    CONNECTION_CLOSED,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    CancelledNotification,
    CancelledNotificationParams,
    ErrorData,
    InputRequest,
    LoggingMessageNotificationParams,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import TypeAdapter, ValidationError

from mcplane.client._connection import (  # pyright: ignore[reportPrivateUsage]
    GATEWAY_STATUSES,
    HTTP_TIMEOUT,
    HTTPClient,
    gateway_failure,
)
from mcplane.gateway.identity import call_headers
from mcplane.gateway.pool import MAX_ANSWER_BYTES, Pool, answer_too_large, raw_pool_for
from mcplane.gateway.relay import current_caller, relay_log, relay_stream_closed
from mcplane.sdk_adapter.transport import (
    BASE_HEADERS,
    RESUME_ATTEMPTS,
    RESUME_DELAY_MS,
    content_type_failure,
    error_data,
    jsonrpc_response,
    loads_answer,
    parse_failure,
    reply_body,
    request_body,
    status_failure,
)

if TYPE_CHECKING:
    from mcp import Client as SDKClient

__all__ = ["HandOver", "LeanLane", "Progress"]

logger = logging.getLogger("mcplane.gateway")

Progress = Callable[[float, float | None, str | None], Awaitable[None]]
_LIST_CHANGED = frozenset(
    {"notifications/tools/list_changed", "notifications/resources/list_changed", "notifications/prompts/list_changed"}
)
_INPUT_REQUEST: TypeAdapter[InputRequest] = TypeAdapter(InputRequest)
_CANCEL_TIMEOUT = 2.0
_FIRST_ID = 1 << 40
"""Request ids of the lane count from here: never one of the SDK's (counting from 0) on a shared session."""
_MAX_HEADS = 256
"""Request heads a lane keeps (calls differ by tool name, caller identity headers)."""
_NO_HEADERS: dict[str, str] = {}
_NOT_SENT_RAW = frozenset({"host", "content-length", "transfer-encoding", "accept-encoding"})
"""Headers of the ``httpx`` client the raw pool writes itself or leaves out (it asks for no compression)."""


class HandOver(Exception):
    """The request is the SDK client's to send (a redirect, or no connection on the lane)."""


class LeanLane:
    """The lean side of one SDK connection to a Streamable HTTP endpoint (see the module doc)."""

    def __init__(self, url: str, *, on_list_changed: Callable[[], None] = lambda: None) -> None:
        self.url = url
        self.http: httpx2.AsyncClient | None = None
        """The connection's pooled client, shared with the SDK transport (``None`` while not connected)."""
        self.pool: Pool | None = None
        """The raw keep-alive pool the lane's POSTs take (``None``: they go through :attr:`http`)."""
        self.session_id: str | None = None
        """The 2025-11-25 session the SDK's ``initialize`` opened, if any."""
        self.served = 0
        """Calls answered on this lane (a plain counter, for tests and diagnostics)."""
        self._on_list_changed = on_list_changed
        self._ids = itertools.count(_FIRST_ID)
        self._client_headers: dict[str, tuple[str, str]] = {}
        self._heads: dict[tuple[str | None, tuple[tuple[str, str], ...]], bytes | None] = {}
        """Request heads (without ``Content-Length``) by the 2025-11-25 session and the stamp's headers
        (calls without identity headers); ``None``: not for the raw pool."""

    @asynccontextmanager
    async def transport(self, headers: dict[str, str] | None, tls: ssl.SSLContext | None) -> AsyncGenerator[Any]:
        """The SDK's Streamable HTTP transport, over an ``httpx`` client this lane shares."""
        from mcp.client.streamable_http import streamable_http_client

        async with HTTPClient(
            headers=headers,
            timeout=HTTP_TIMEOUT,
            verify=tls if tls is not None else True,
            event_hooks={"response": [self._note_session]},
        ) as http:
            self.http, self.session_id = http, None
            self.pool = raw_pool_for(http, self.url, tls)
            self._client_headers = {
                name.lower(): (name, value) for name, value in http.headers.items() if name.lower() not in _NOT_SENT_RAW
            }
            self._heads = {}
            try:
                async with streamable_http_client(self.url, http_client=http) as streams:
                    yield streams
            finally:
                self.http = None
                if self.pool is not None:
                    self.pool.close()
                    self.pool = None

    async def _note_session(self, response: httpx2.Response) -> None:
        session_id = response.headers.get("mcp-session-id")
        if session_id:
            self.session_id = session_id

    # ----------------------------------------------------------------- one request
    async def send(
        self,
        client: SDKClient,
        data: dict[str, Any],
        options: CallOptions,
        *,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """Send ``data`` (``method`` and ``params``, stamped by the SDK session's stamp into
        ``options``) on the connection's session; the raw result. A JSON-RPC error is raised as
        :class:`~mcp.shared.exceptions.MCPError`; :class:`HandOver` when the SDK client must send it."""
        http = self.http
        if http is None:
            raise HandOver
        modern = client.protocol_version in MODERN_PROTOCOL_VERSIONS
        stamped: dict[str, str] = options.get("headers") or _NO_HEADERS
        request_id = next(self._ids)
        if progress is not None:
            data["params"].setdefault("_meta", {})["progressToken"] = request_id
        body = request_body(request_id, data)
        pending = _Pending(request_id, progress)
        try:
            message = await self._exchange(http, client, body, modern, stamped, pending)
        except anyio.get_cancelled_exc_class():
            if not modern and self.session_id is not None:
                with anyio.CancelScope(shield=True), anyio.move_on_after(_CANCEL_TIMEOUT):
                    await client.session.send_notification(
                        CancelledNotification(
                            params=CancelledNotificationParams(request_id=request_id, reason="caller cancelled")
                        )
                    )
            raise
        if "error" in message:
            raise MCPError.from_error_data(error_data(message["error"]))
        raw: Any = message["result"]
        if not isinstance(raw, dict):
            raise parse_failure("result is not an object")
        self.served += 1
        return raw  # pyright: ignore[reportUnknownVariableType]

    async def _exchange(
        self,
        http: httpx2.AsyncClient,
        client: SDKClient,
        body: bytes,
        modern: bool,
        stamped: dict[str, str],
        pending: _Pending,
    ) -> dict[str, Any]:
        """POST the request; the JSON-RPC response for it (or the transport's stand-in error)."""
        pool = self.pool
        if pool is not None:
            if call_headers.get() is None:
                head = self._kept_head(pool, modern, stamped, len(body))
            else:  # a caller's credentials: not kept past its call
                head = self._prefix_with(pool, self._headers(modern, stamped), len(body))
            if head is not None:
                return await self._exchange_raw(pool, http, client, head, body, pending)
        headers = self._headers(modern, stamped)
        async with http.stream("POST", self.url, content=body, headers=headers) as response:
            content_type = response.headers.get("content-type", "").lower()
            return await self._answer(
                http, client, response.status_code, content_type, response.aread, response.aiter_lines, pending
            )

    def _headers(self, modern: bool, stamped: dict[str, str]) -> dict[str, str]:
        """The request's own headers: the base ones, the 2025-11-25 session, the stamp's, the caller's identity."""
        headers = dict(BASE_HEADERS)
        if not modern and self.session_id is not None:
            headers["mcp-session-id"] = self.session_id
        if (pinned := stamped.get(MCP_PROTOCOL_VERSION_HEADER)) is not None:
            headers[MCP_PROTOCOL_VERSION_HEADER] = pinned
        headers.update(stamped)
        if (identity := call_headers.get()) is not None:
            headers.update(identity)
        return headers

    def _kept_head(self, pool: Pool, modern: bool, stamped: dict[str, str], length: int) -> bytes | None:
        """:meth:`_prefix_with` of a call without identity headers, its prefix kept per session and
        stamp (what :meth:`_headers` is made of then): a call like an earlier one builds no header
        dict and no head of its own."""
        key = (None if modern else self.session_id, tuple(stamped.items()))
        heads = self._heads
        if key in heads:
            prefix = heads[key]
        else:
            prefix = self._prefix(pool, self._headers(modern, stamped))
            if len(heads) >= _MAX_HEADS:
                heads.clear()
            heads[key] = prefix
        return None if prefix is None else prefix + b"content-length: %d\r\n\r\n" % length

    def _prefix_with(self, pool: Pool, headers: dict[str, str], length: int) -> bytes | None:
        prefix = self._prefix(pool, headers)
        return None if prefix is None else prefix + b"content-length: %d\r\n\r\n" % length

    def _prefix(self, pool: Pool, headers: dict[str, str]) -> bytes | None:
        own = {name.lower() for name in headers}
        merged = [pair for key, pair in self._client_headers.items() if key not in own]
        merged.extend(headers.items())
        for _, value in merged:
            if "\r" in value or "\n" in value:
                return None
        try:
            return pool.prefix(merged)
        except UnicodeEncodeError:
            return None

    async def _exchange_raw(
        self, pool: Pool, http: httpx2.AsyncClient, client: SDKClient, head: bytes, body: bytes, pending: _Pending
    ) -> dict[str, Any]:
        conn = await pool.request(head, body)
        try:
            status, response_headers = conn.status, conn.headers
            session_id = response_headers.get("mcp-session-id")
            if session_id:
                self.session_id = session_id
            content_type = response_headers.get("content-type", "").lower()
            encoding = response_headers.get("content-encoding", "identity").lower()
            read, pieces = conn.read, conn.pieces
            if encoding != "identity":
                read, pieces = _decoding(encoding, conn.read, conn.pieces)
            if status in GATEWAY_STATUSES:  # what the httpx client does for the SDK (client/_connection.py)
                content = await read()
                stand_in = gateway_failure(status, response_headers.get("retry-after"), content)
                if stand_in is not None:
                    logger.debug("HTTP %d from a gateway for %s: dependency_unavailable", status, self.url)
                    content, content_type = stand_in, "application/json"

                async def read_again() -> bytes:
                    return content

                read = read_again
            answer = await self._answer(http, client, status, content_type, read, lambda: _lines(pieces()), pending)
        except BaseException:
            pool.release(conn, discard=True)  # never reuse a connection with an answer half read
            raise
        pool.release(conn)
        return answer

    async def _answer(
        self,
        http: httpx2.AsyncClient,
        client: SDKClient,
        status: int,
        content_type: str,
        read: Callable[[], Awaitable[bytes]],
        lines: Callable[[], AsyncIterator[str]],
        pending: _Pending,
    ) -> dict[str, Any]:
        """The JSON-RPC response in an HTTP answer, read as the SDK's transport reads it."""
        if 300 <= status < 400:
            raise HandOver  # the SDK follows same-origin redirects and names the others
        if status == 202:
            raise status_failure(status, in_session=self.session_id is not None)
        if status >= 400:
            if content_type.startswith("application/json"):
                parsed = loads_answer(await read())
                if isinstance(parsed, dict) and "error" in parsed and parsed.get("jsonrpc") == "2.0":
                    try:
                        return {"error": error_data(parsed["error"])}
                    except MCPError:
                        pass
            raise status_failure(status, in_session=self.session_id is not None)
        if content_type.startswith("application/json"):
            return jsonrpc_response(loads_answer(await read()), pending.request_id, "Failed to parse JSON response")
        if content_type.startswith("text/event-stream"):
            return await self._read_events(http, client, lines(), pending)
        raise content_type_failure(content_type)

    async def _read_events(
        self, http: httpx2.AsyncClient, client: SDKClient, lines: AsyncIterator[str], pending: _Pending
    ) -> dict[str, Any]:
        """Read the call's event stream to its answer; a stream the upstream closes before it
        (SEP-1699 polling) is resumed with ``Last-Event-ID``, as the SDK's transport does."""
        last_id: str | None = None
        retry_ms: int | None = None
        attempts = 0
        resumed = False
        while True:
            event, data = "message", []
            async for line in lines:
                if line:
                    field, _, value = line.partition(":")
                    value = value.removeprefix(" ")
                    if field == "data":
                        data.append(value)
                    elif field == "event":
                        event = value
                    elif field == "id":
                        last_id, attempts = value, 0
                    elif field == "retry" and value.isdigit():
                        retry_ms = int(value)
                    continue
                payload = "\n".join(data)
                if event == "message" and payload:  # an empty one primes resumption: nothing to read
                    parsed = loads_answer(payload.encode())
                    if isinstance(parsed, dict) and ("result" in parsed or "error" in parsed):
                        if resumed:
                            await _close(lines)  # the resumed stream's GET: end it here
                        return jsonrpc_response(parsed, pending.request_id, "Failed to parse SSE message")
                    await self._incoming(http, client, parsed, pending)
                event, data = "message", []
            if last_id is None or attempts >= RESUME_ATTEMPTS:
                raise MCPError(CONNECTION_CLOSED, "SSE stream ended without a response")
            attempts += 1
            if not resumed:
                await relay_stream_closed(current_caller.get())
            await anyio.sleep((retry_ms if retry_ms is not None else RESUME_DELAY_MS) / 1000)
            lines, resumed = self._resumed(http, client, last_id), True

    async def _resumed(self, http: httpx2.AsyncClient, client: SDKClient, last_id: str) -> AsyncIterator[str]:
        """The lines of the stream resumed after ``last_id`` (none when the upstream will not resume it)."""
        headers = {"accept": "text/event-stream", "last-event-id": last_id}
        headers[MCP_PROTOCOL_VERSION_HEADER] = client.protocol_version
        if self.session_id is not None:
            headers["mcp-session-id"] = self.session_id
        if (identity := call_headers.get()) is not None:
            headers.update(identity)
        async with http.stream("GET", self.url, headers=headers) as response:
            if response.status_code != 200 or not response.headers.get("content-type", "").startswith(
                "text/event-stream"
            ):
                return
            async for line in response.aiter_lines():
                yield line

    async def _incoming(self, http: httpx2.AsyncClient, client: SDKClient, message: Any, pending: _Pending) -> None:
        """A message on the call's stream that is not its answer: a question or a notification."""
        if not isinstance(message, dict):
            raise MCPError(PARSE_ERROR, "Failed to parse SSE message")
        method = message.get("method")
        if "id" not in message:
            await self._notification(method, message.get("params"), pending)
            return
        session = client.session
        try:
            request = _INPUT_REQUEST.validate_python({"method": method, "params": message.get("params")})
        except ValidationError:
            answer: Any = ErrorData(code=METHOD_NOT_FOUND, message="Method not found")
        else:
            meta = request.params.meta if request.params is not None else None
            context = ClientRequestContext(session=session, request_id=message["id"], meta=meta)
            answer = await session.dispatch_input_request(context, request)
        headers = dict(BASE_HEADERS)
        if self.session_id is not None:
            headers["mcp-session-id"] = self.session_id
        headers[MCP_PROTOCOL_VERSION_HEADER] = client.protocol_version
        await http.post(self.url, content=reply_body(message["id"], answer), headers=headers)

    async def _notification(self, method: Any, params: Any, pending: _Pending) -> None:
        """A notification on the call's stream: list changes wake the supervisor, log messages and
        progress go to the caller (:mod:`mcplane.gateway.relay`), the rest is dropped."""
        if method in _LIST_CHANGED:
            self._on_list_changed()
        elif method == "notifications/message":
            try:
                log = LoggingMessageNotificationParams.model_validate(params)
            except ValidationError:
                return
            await relay_log(current_caller.get(), log)
        elif method == "notifications/progress" and pending.progress is not None and isinstance(params, dict):
            params = cast("dict[str, Any]", params)
            progress, total, note = params.get("progress"), params.get("total"), params.get("message")
            if params.get("progressToken") == pending.request_id and isinstance(progress, int | float):
                await pending.progress(
                    float(progress),
                    float(total) if isinstance(total, int | float) else None,
                    note if isinstance(note, str) else None,
                )


@dataclass(frozen=True, slots=True)
class _Pending:
    """The request a stream answers: its id, and where its progress goes."""

    request_id: int
    progress: Progress | None


async def _close(lines: AsyncIterator[str]) -> None:
    close = getattr(lines, "aclose", None)
    if close is not None:
        await close()


async def _lines(pieces: AsyncIterator[bytes]) -> AsyncIterator[str]:
    """The body's lines, split and decoded as ``httpx``'s ``aiter_lines`` splits and decodes them."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    splitter = LineDecoder()
    async for piece in pieces:
        for line in splitter.decode(decoder.decode(piece)):
            yield line
    tail = decoder.decode(b"", final=True)
    for line in [*(splitter.decode(tail) if tail else []), *splitter.flush()]:
        yield line


def _decoding(
    encoding: str, read: Callable[[], Awaitable[bytes]], pieces: Callable[[], AsyncIterator[bytes]]
) -> tuple[Callable[[], Awaitable[bytes]], Callable[[], AsyncIterator[bytes]]]:
    """``read`` and ``pieces`` decompressing a ``gzip`` or ``deflate`` body (none was asked for)."""
    if encoding not in ("gzip", "deflate"):
        raise parse_failure(f"unsupported content encoding {encoding!r}")

    def inflater() -> Any:
        return zlib.decompressobj(zlib.MAX_WBITS | 32)  # gzip or zlib, by the header

    async def read_inflated() -> bytes:
        return b"".join([piece async for piece in pieces_inflated()])

    async def pieces_inflated() -> AsyncIterator[bytes]:
        inflate = inflater()
        size = 0
        async for piece in pieces():
            try:
                # Bounded output per input piece: a small compressed body cannot inflate without limit.
                data = inflate.decompress(piece, MAX_ANSWER_BYTES + 1 - size)
            except zlib.error as exc:
                raise parse_failure(str(exc)) from None
            size += len(data)
            if size > MAX_ANSWER_BYTES or inflate.unconsumed_tail:
                raise answer_too_large(MAX_ANSWER_BYTES)
            yield data

    return read_inflated, pieces_inflated
