"""Era detection: the hot path serves a request in the era the SDK would, or leaves it to the SDK.

HTTP decides per request (``MCP-Protocol-Version``, the ``_meta`` envelope, a session id); a
stream decides once, by its opening request, as the SDK's dual-era loop does.
"""

from __future__ import annotations

from typing import Any

import pytest

from mcplane import Plane
from tests.sdk_compat.wire import LEGACY, MODERN, Era, answers_of, envelope, routing_headers, tool_call


def make_plane() -> Plane:
    plane = Plane("eras")

    @plane.tool()
    async def echo(text: str) -> str:
        return text

    return plane


PLAIN = tool_call("echo", {"text": "hi"})
ENVELOPED = envelope(PLAIN)
OLD_ENVELOPE = envelope(
    tool_call("echo", {"text": "hi"}, _meta={"io.modelcontextprotocol/protocolVersion": LEGACY})  # a handshake version
)

# (case, era, message, extra headers, served)
HTTP_CASES: list[tuple[str, Era, dict[str, Any], dict[str, str], int]] = [
    ("modern", "http-2026", ENVELOPED, routing_headers(ENVELOPED), 1),
    ("modern-without-envelope", "http-2026", PLAIN, routing_headers(PLAIN), 0),
    ("modern-with-a-session-id", "http-2026", ENVELOPED, {**routing_headers(ENVELOPED), "mcp-session-id": "x"}, 0),
    ("modern-header-legacy-envelope", "http-2026", OLD_ENVELOPE, routing_headers(OLD_ENVELOPE), 0),
    (
        "unknown-version",
        "http-2026",
        ENVELOPED,
        {**routing_headers(ENVELOPED), "mcp-protocol-version": "2099-01-01"},
        0,
    ),
    ("no-version-header", "http-2026", ENVELOPED, {"mcp-method": "tools/call", "mcp-name": "echo"}, 0),
    ("legacy", "http-2025", PLAIN, {}, 1),
    ("legacy-session-modern-envelope", "http-2025", ENVELOPED, {}, 0),
    ("legacy-session-modern-header", "http-2025", ENVELOPED, {"mcp-protocol-version": MODERN}, 0),
    ("legacy-session-older-version", "http-2025", PLAIN, {"mcp-protocol-version": "2025-06-18"}, 1),
]


@pytest.mark.parametrize(("case", "era", "message", "headers", "served"), HTTP_CASES, ids=[c[0] for c in HTTP_CASES])
async def test_http_requests_are_served_in_the_era_the_sdk_serves_them(
    case: str, era: Era, message: dict[str, Any], headers: dict[str, str], served: int
) -> None:
    compared = await answers_of(make_plane, era, [message], headers, raw=True)
    assert compared.fast == compared.sdk
    assert compared.served == served


STREAM_CASES: list[tuple[str, Era, dict[str, Any], int]] = [
    ("modern-connection", "stdio-2026", ENVELOPED, 1),
    ("modern-connection-plain-request", "stdio-2026", PLAIN, 0),
    ("modern-connection-legacy-envelope", "stdio-2026", OLD_ENVELOPE, 0),
    ("legacy-connection", "stdio-2025", PLAIN, 1),
    ("legacy-connection-modern-envelope", "stdio-2025", ENVELOPED, 0),
]


@pytest.mark.parametrize(("case", "era", "message", "served"), STREAM_CASES, ids=[c[0] for c in STREAM_CASES])
async def test_a_streams_era_is_its_opening_requests(case: str, era: Era, message: dict[str, Any], served: int) -> None:
    compared = await answers_of(make_plane, era, [message], raw=True)
    assert compared.fast == compared.sdk
    assert compared.served == served


async def test_a_stream_opened_by_a_tool_call_is_decided_by_it() -> None:
    """The opening request itself goes to the SDK (it decides the era); the next takes the hot path."""
    from tests.sdk_compat.wire import stdio_peer

    results = {}
    for fast in (True, False):
        plane = make_plane()
        async with stdio_peer(plane, fast=fast, modern=False, handshake=False) as peer:
            first = await peer.call(ENVELOPED, raw=True)
            second = await peer.call(envelope(tool_call("echo", {"text": "again"}, request_id=2)), raw=True)
            results[fast] = (first, second, plane.fast.served)
    assert results[True][:2] == results[False][:2]
    assert (results[True][2], results[False][2]) == (1, 0)
