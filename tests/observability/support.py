"""Helpers for the operations tests: the ops app, polling without fixed sleeps, raw MCP requests, log events."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import orjson
import pytest

from tests.conftest import TESTS_DIR

OPS_APP = TESTS_DIR / "observability" / "ops_app.py"
MODERN = "2026-07-28"

T = TypeVar("T")


async def eventually(probe: Callable[[], T | None], *, seconds: float = 15.0, what: str = "the condition") -> T:
    """Poll ``probe`` until it returns something other than ``None`` (fail after ``seconds``)."""
    with anyio.move_on_after(seconds):
        while True:
            found = probe()
            if found is not None:
                return found
            await anyio.sleep(0.02)
    pytest.fail(f"{what} did not happen within {seconds:g} s")


def started(path: Path) -> Callable[[], bool | None]:
    """A probe: the ops app's ``wait_for(path)`` call is running."""
    marker = Path(str(path) + ".started")
    return lambda: True if marker.exists() else None


def modern_call(name: str, arguments: dict[str, Any], request_id: int = 1) -> dict[str, Any]:
    """A stateless (2026-07-28) ``tools/call`` request."""
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {
            "name": name,
            "arguments": arguments,
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": MODERN,
                "io.modelcontextprotocol/clientCapabilities": {},
            },
        },
    }


def modern_headers(name: str) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": MODERN,
        "mcp-method": "tools/call",
        "mcp-name": name,
    }


def events(log_text: str) -> list[dict[str, Any]]:
    """The JSON log lines of a server's stderr (other lines are skipped)."""
    found: list[dict[str, Any]] = []
    for line in log_text.splitlines():
        if line.startswith("{"):
            try:
                found.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                continue
    return found


def lifecycle(log_text: str) -> list[str]:
    """The lifecycle events, in order."""
    return [e["event"] for e in events(log_text) if e.get("logger") == "mcplane.lifecycle"]
