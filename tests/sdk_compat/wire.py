"""Run the same requests through the SDK's path and mcplane's hot path; compare what reaches the wire.

A *peer* is one connection to a plane over one transport and era: ``http-2026`` (stateless
Streamable HTTP), ``http-2025`` (a Streamable HTTP session, handshake done), ``stdio-2026`` and
``stdio-2025`` (the stdio transport over pipes, served in-process). :func:`answers_of` runs a list
of requests through a fresh plane with the hot path on, then off, and returns both lists of
answers, normalised: only volatile fields (correlation ids) are dropped. Nothing is shared
between calls of it, so no test depends on another's order.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import IO, Any, Literal, Protocol

import anyio
import httpx

from mcplane import Plane
from mcplane.sdk_adapter.mcpserver import lowlevel_server
from mcplane.transports.http import HTTPApp, HTTPOptions
from mcplane.transports.stdio import stdio_streams

MODERN = "2026-07-28"
LEGACY = "2025-11-25"
WAIT = 20.0

Era = Literal["http-2026", "http-2025", "stdio-2026", "stdio-2025"]
ERAS: tuple[Era, ...] = ("http-2026", "http-2025", "stdio-2026", "stdio-2025")
VOLATILE = frozenset({"correlation_id"})


@dataclass(frozen=True)
class Answer:
    """One answer as its client saw it: the HTTP status (``None`` on stdio) and the JSON body."""

    status: int | None
    body: Any


class Peer(Protocol):
    """One connection to a plane; ``call`` sends a request and returns its answer."""

    served: Callable[[], int]

    async def call(
        self, message: dict[str, Any], headers: dict[str, str] | None = None, *, raw: bool = False
    ) -> Answer:
        """``raw``: send ``message`` as it is (no envelope, no routing headers added)."""
        ...


def normalise(value: Any) -> Any:
    """``value`` without volatile fields (also inside JSON text, where error objects travel)."""
    if isinstance(value, dict):
        return {key: normalise(item) for key, item in value.items() if key not in VOLATILE}
    if isinstance(value, list):
        return [normalise(item) for item in value]
    if isinstance(value, str) and value.startswith("{") and '"correlation_id"' in value:
        return normalise(json.loads(value))
    return value


def body_of(response: httpx.Response) -> Any:
    """The JSON-RPC message of an HTTP answer (a JSON body, or the last event of an SSE stream)."""
    if not response.content:
        return None
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        lines = response.text.replace("\r\n", "\n").split("\n")  # not splitlines(): U+2028 is JSON text
        data = [line[5:].strip() for line in lines if line.startswith("data:")]
        return json.loads([item for item in data if item][-1])
    return json.loads(response.content)


def envelope(message: dict[str, Any]) -> dict[str, Any]:
    """``message`` with the 2026-07-28 per-request ``_meta`` envelope added (kept if present)."""
    params = dict(message.get("params") or {})
    meta = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}
    params["_meta"] = {**meta, **(params.get("_meta") or {})}
    return {**message, "params": params}


def tool_call(name: str, arguments: Any = None, *, request_id: int | str = 1, **params: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, **params}
    if arguments is not None:
        body["arguments"] = arguments
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": body}


def routing_headers(message: dict[str, Any]) -> dict[str, str]:
    """The 2026-07-28 ``Mcp-Method``/``Mcp-Name`` headers a client sends with ``message``."""
    headers = {"mcp-protocol-version": MODERN, "mcp-method": str(message.get("method"))}
    params = message.get("params")
    if isinstance(params, dict) and isinstance(params.get("name"), str):
        headers["mcp-name"] = params["name"]
    return headers


_JSON = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
_INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 0,
    "method": "initialize",
    "params": {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "compat", "version": "1"}},
}
_INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


class HTTPPeer:
    def __init__(self, http: httpx.AsyncClient, app: HTTPApp, modern: bool) -> None:
        self.http, self.app, self.modern = http, app, modern
        self.session: str | None = None
        self.served = lambda: app.fast.served if app.fast is not None else 0

    async def open(self) -> None:
        if not self.modern:
            response = await self.http.post("/mcp", json=_INITIALIZE, headers=_JSON)
            self.session = response.headers["mcp-session-id"]
            note = await self.http.post("/mcp", json=_INITIALIZED, headers=self.headers())
            assert note.status_code == 202

    def headers(self) -> dict[str, str]:
        if self.session is None:
            return dict(_JSON)
        return {**_JSON, "mcp-session-id": self.session, "mcp-protocol-version": LEGACY}

    async def call(
        self, message: dict[str, Any], headers: dict[str, str] | None = None, *, raw: bool = False
    ) -> Answer:
        if raw:
            sent = {**self.headers(), **(headers or {})}
        elif self.modern:
            message = envelope(message)
            sent = {**_JSON, **routing_headers(message), **(headers or {})}
        else:
            sent = {**self.headers(), **(headers or {})}
        response = await self.http.post("/mcp", content=json.dumps(message).encode(), headers=sent)
        return Answer(response.status_code, normalise(body_of(response)))


class StdioPeer:
    """The stdio transport over two pipes, served by the plane in this process."""

    def __init__(self, to_server: IO[bytes], from_server: IO[bytes], plane: Plane, modern: bool) -> None:
        self._to, self._from, self.modern = to_server, from_server, modern
        self._pings = 0
        self.served = lambda: plane.fast.served

    async def _send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message).encode() + b"\n"
        await anyio.to_thread.run_sync(lambda: (self._to.write(data), self._to.flush()))

    async def _receive(self) -> Any:
        with anyio.fail_after(WAIT):
            line = await anyio.to_thread.run_sync(self._from.readline, abandon_on_cancel=True)
        return json.loads(line)  # not orjson: integers beyond 64 bits are compared exactly

    async def open(self) -> None:
        """Settle the connection's era as a client does: the handshake, or a first enveloped request."""
        if self.modern:
            await self._send(envelope({"jsonrpc": "2.0", "id": 0, "method": "server/discover"}))
        else:
            await self._send(_INITIALIZE)
        assert (await self._receive())["id"] == 0
        if not self.modern:
            await self._send(_INITIALIZED)

    async def call(
        self, message: dict[str, Any], headers: dict[str, str] | None = None, *, raw: bool = False
    ) -> Answer:
        """The answer to ``message``; ``None`` when nothing answered it.

        A ``ping`` follows each request. A request with an id that can be answered is read until
        its answer; one without (a bool id, a float id) is refused when it is read, before the
        ping: what came before the ping's answer answers it. Notifications are skipped. So an
        unanswered request is seen without waiting for a time.
        """
        self._pings += 1
        ping = {"jsonrpc": "2.0", "id": f"ping-{self._pings}", "method": "ping"}
        await self._send(envelope(message) if self.modern and not raw else message)
        await self._send(envelope(ping) if self.modern else ping)
        request_id = message.get("id")
        answerable = isinstance(request_id, str | int) and not isinstance(request_id, bool)
        answers: list[Any] = []
        pinged = False
        while not pinged or (answerable and not answers):
            answer = await self._receive()
            if answer.get("id") == ping["id"]:
                pinged = True
            elif ("id" in answer and not pinged) or (answerable and answer.get("id") == request_id):
                answers.append(normalise(answer))
        assert len(answers) <= 1, answers
        return Answer(None, answers[0] if answers else None)


@asynccontextmanager
async def http_peer(plane: Plane, *, fast: bool, modern: bool) -> AsyncIterator[HTTPPeer]:
    app = HTTPApp(plane, HTTPOptions(fast_path=fast))
    async with app.running():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            peer = HTTPPeer(http, app, modern)
            await peer.open()
            yield peer


@asynccontextmanager
async def stdio_peer(plane: Plane, *, fast: bool, modern: bool, handshake: bool = True) -> AsyncIterator[StdioPeer]:
    """``handshake=False``: the connection's era is left for the first request to decide."""
    client_read, server_write = os.pipe()
    server_read, client_write = os.pipe()
    # Closed in reverse: the server's ends first, so a client read still waiting sees the end of input.
    with (
        os.fdopen(client_read, "rb") as from_server,
        os.fdopen(client_write, "wb", buffering=0) as to_server,
        os.fdopen(server_read, "rb", buffering=0) as stdin,
        os.fdopen(server_write, "wb", buffering=0) as stdout,
    ):
        lowlevel = lowlevel_server(plane.sdk)
        async with plane.lifespan(), anyio.create_task_group() as tg:
            stop = anyio.Event()

            async def serve() -> None:
                hot = plane.fast if fast else None
                async with stdio_streams(stdin, stdout, fast=hot, stop=stop) as (read_stream, write_stream):
                    await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())

            tg.start_soon(serve)
            peer = StdioPeer(to_server, from_server, plane, modern)
            if handshake:
                await peer.open()
            try:
                yield peer
            finally:
                stop.set()
                to_server.close()
                tg.cancel_scope.cancel()


@asynccontextmanager
async def peer_of(plane: Plane, era: Era, *, fast: bool) -> AsyncIterator[Peer]:
    modern = era.endswith("2026")
    opened = http_peer(plane, fast=fast, modern=modern) if era.startswith("http") else None
    if opened is not None:
        async with opened as peer:
            yield peer
        return
    async with stdio_peer(plane, fast=fast, modern=modern) as stdio:
        yield stdio


@dataclass(frozen=True)
class Compared:
    """The answers of both paths to the same requests, and the calls the hot path served."""

    fast: list[Answer]
    sdk: list[Answer]
    served: int


async def answers_of(
    make_plane: Callable[[], Plane],
    era: Era,
    requests: list[dict[str, Any]],
    headers: dict[str, str] | None = None,
    *,
    raw: bool = False,
) -> Compared:
    """``requests`` sent in order to a fresh plane on each path (hot path on, then off)."""
    results: dict[bool, list[Answer]] = {}
    served = 0
    for fast in (True, False):
        plane = make_plane()
        async with peer_of(plane, era, fast=fast) as peer:
            results[fast] = [await peer.call(message, headers, raw=raw) for message in requests]
            if fast:
                served = peer.served()
            else:
                assert peer.served() == 0
    return Compared(results[True], results[False], served)
