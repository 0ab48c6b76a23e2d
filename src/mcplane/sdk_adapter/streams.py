"""Memory streams of the SDK that carry contextvars from sender to receiver."""

from __future__ import annotations

from mcp.shared._context_streams import create_context_streams  # pyright: ignore[reportPrivateUsage]
from mcp.shared._stream_protocols import ReadStream, WriteStream  # pyright: ignore[reportPrivateUsage]

__all__ = ["ReadStream", "WriteStream", "create_context_streams"]
