"""The hot path on message streams (stdio lines, WebSocket frames); see :mod:`mcplane.fastpath`.

A stream connection's era is decided by its opening request, as the SDK's dual-era loop decides
it; the hot path engages only once that has happened and only for requests of the same era:

* 2025-11-25: after the ``initialize`` answer and the client's ``notifications/initialized``,
  served at the negotiated version;
* 2026-07-28: requests carrying the per-request envelope, validated by the SDK's inbound ladder.

A hot-path call runs in its own task; ``notifications/cancelled`` for it cancels that task and no
answer is sent, as the protocol requires (through the task's own ``cancel()``: no cancel scope per
call). Everything else goes to the SDK.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio.abc
from mcp_types import JSONRPCMessage, JSONRPCResponse

from mcplane.context import ANONYMOUS, Principal
from mcplane.fastpath import FastPath
from mcplane.jsonrpc import answer_bytes
from mcplane.sdk_adapter.eligibility import handshake_version, opens_modern

__all__ = ["StreamFastPath"]


class _Running:
    """A hot-path call offered and not finished: what ``notifications/cancelled`` cancels.

    Its task is known once it starts; cancelled before that, it never runs.
    """

    __slots__ = ("cancelled", "task")

    def __init__(self) -> None:
        self.task: asyncio.Task[Any] | None = None
        self.cancelled = False

    def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            if self.task is not None:
                self.task.cancel()


class StreamFastPath:
    """Per-connection state of the hot path; the transport offers it every decoded message."""

    def __init__(
        self,
        fast: FastPath,
        write: Callable[[bytes], Awaitable[None]],
        *,
        principal: Principal = ANONYMOUS,
        scope: Mapping[str, Any] | None = None,
    ) -> None:
        self.fast = fast
        self._write = write
        self._principal = principal
        self._scope = scope
        self._era: str | None = None
        self._initialize_id: Any = None
        self._legacy_version: str | None = None
        self._initialized = False
        self._running: dict[Any, _Running] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self.on_done: Callable[[Any], None] | None = None
        """Told the id of every request the hot path finished (answered or cancelled)."""

    def bind(self, task_group: anyio.abc.TaskGroup) -> None:
        self._tg = task_group

    def offer(self, raw: Any) -> bool:
        """Take ``raw`` (a decoded JSON value) onto the hot path; False leaves it to the SDK."""
        if not isinstance(raw, dict):
            return False
        method = raw.get("method")
        if method == "notifications/cancelled":
            params = raw.get("params")
            request_id = params.get("requestId") if isinstance(params, dict) else None
            running = self._running.get(request_id) if isinstance(request_id, str | int) else None
            if running is not None:
                running.cancel()
            return False
        if self._era is None:
            if "id" in raw and isinstance(method, str):
                self._era = "modern" if opens_modern(method, raw.get("params")) else "legacy"
                if method == "initialize":
                    self._initialize_id = raw.get("id")
            return False
        if self._era == "legacy":
            if method == "notifications/initialized" and self._legacy_version is not None:
                self._initialized = True
                return False
            if not self._initialized or self._legacy_version is None:
                return False
            if self.fast.match(raw, modern=False) is None:
                return False
            version = self._legacy_version
        else:
            matched = self.fast.match(raw, modern=True)
            if matched is None:
                return False
            version = matched
        if self._tg is None or raw["id"] in self._running:
            return False
        running = self._running[raw["id"]] = _Running()
        self._tg.start_soon(self._serve, raw, version, running)
        return True

    def observe_outbound(self, message: JSONRPCMessage) -> None:
        """Learn the negotiated version from the SDK's answer to ``initialize``."""
        if (
            self._initialize_id is not None
            and isinstance(message, JSONRPCResponse)
            and message.id == self._initialize_id
        ):
            version = handshake_version(message.result)
            if version is not None:
                self._legacy_version = version
            self._initialize_id = None

    async def _serve(self, raw: dict[str, Any], version: str, running: _Running) -> None:
        request_id = raw["id"]
        task = running.task = asyncio.current_task()
        assert task is not None
        try:
            if running.cancelled:
                return
            response = await self.fast.serve(raw, version, principal=self._principal, scope=self._scope)
            await self._write(answer_bytes(response))
        except asyncio.CancelledError:
            if not running.cancelled or task.uncancel() > 0:
                raise  # not (only) the client's cancellation: the connection is ending
        finally:
            self._running.pop(request_id, None)
            if self.on_done is not None:
                self.on_done(request_id)
