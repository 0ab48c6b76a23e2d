"""A socket-less uvicorn connection for protocol tests: a transport that records what is written,
and one place that builds a protocol instance over it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import uvicorn
from uvicorn.server import ServerState

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


class Recording:
    """A transport that records every ``write`` (and the close) instead of sending; ``grew`` is set
    on each write (replace it with a new event to wait for the next)."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.grew = anyio.Event()

    @property
    def written(self) -> bytes:
        return b"".join(self.writes)

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after the close"
        self.writes.append(bytes(data))
        self.grew.set()

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def set_protocol(self, protocol: Any) -> None: ...


def connect(protocol_class: Any, app: App) -> tuple[Any, Recording]:
    """A fresh connection of uvicorn's ``protocol_class`` serving ``app``, over a ``Recording``."""
    config = uvicorn.Config(app, lifespan="off", log_level="critical", http=protocol_class)
    config.load()
    protocol = protocol_class(config=config, server_state=ServerState(), app_state={})
    transport = Recording()
    protocol.connection_made(transport)
    return protocol, transport
