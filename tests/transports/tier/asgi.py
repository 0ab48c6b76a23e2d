"""Driving one ASGI app with a raw scope, ``receive`` and ``send``, as a server would."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import anyio
import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send


@dataclass
class Answer:
    """What an app sent for one request."""

    messages: list[Message] = field(default_factory=list)

    @property
    def status(self) -> int:
        return int(self.messages[0]["status"])

    @property
    def headers(self) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.messages[0]["headers"]}

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages if m["type"] == "http.response.body")

    def json(self) -> Any:
        return orjson.loads(self.body)


def http_scope(
    method: str = "POST", path: str = "/mcp", headers: Iterable[tuple[str, str]] = (), **extra: Any
) -> Scope:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "scheme": "http",
        "client": ("203.0.113.9", 50000),
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers],
        **extra,
    }


def websocket_scope(path: str = "/mcp", headers: Iterable[tuple[str, str]] = ()) -> Scope:
    return {**http_scope("GET", path, headers), "type": "websocket", "subprotocols": ["mcp"]}


def chunks_receive(*chunks: bytes) -> tuple[Receive, list[int]]:
    """A ``receive`` yielding ``chunks`` as one body, then ``http.disconnect``; and how many were read."""
    read = [0]

    async def receive() -> Message:
        index = read[0]
        read[0] += 1
        if index < len(chunks):
            return {"type": "http.request", "body": chunks[index], "more_body": index < len(chunks) - 1}
        if not chunks and index == 0:
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.disconnect"}

    return receive, read


async def drive(app: ASGIApp, scope: Scope, receive: Receive | None = None) -> Answer:
    answer = Answer()

    async def send(message: Message) -> None:
        answer.messages.append(message)

    with anyio.fail_after(10):
        await app(scope, receive or chunks_receive()[0], send)
    return answer


class Endpoint:
    """The app behind a layer under test: answers 200 with what it saw (the scope it got and the
    body it read), and remembers the scopes."""

    def __init__(self) -> None:
        self.scopes: list[Scope] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scopes.append(scope)
        if scope["type"] == "lifespan":
            return
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            return
        body = b""
        if scope["method"] == "POST" and "mcplane.body" not in scope:
            message = await receive()
            body = message.get("body", b"")
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"endpoint:" + body})


def refusal_of(answer: Answer) -> dict[str, Any]:
    """The JSON-RPC error of a refused request (asserting the envelope's shape on the way)."""
    assert answer.headers["content-type"] == "application/json"
    assert int(answer.headers["content-length"]) == len(answer.body)
    body = answer.json()
    assert body["jsonrpc"] == "2.0"
    return body["error"]
