"""Resuming a 2025-11-25 GET stream (``Last-Event-ID``) over real HTTP replays only the session's
own events: another session's event id, however guessed, resumes nothing of that session."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import httpx
import pytest

from tests.conftest import REPO_ROOT, ServerProcess, start_server

SHIFTY_APP = REPO_ROOT / "tests" / "gateway" / "shifty_app.py"
TIMEOUT = 15.0
JSON_AND_SSE = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = start_server(SHIFTY_APP, tmp_path=tmp_path_factory.mktemp("resume"))
    yield process
    process.stop()


async def _open_session(http: httpx.AsyncClient, url: str) -> str:
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    answer = await http.post(url, json=init, headers=JSON_AND_SSE)
    assert answer.status_code == 200, answer.text
    session = answer.headers["mcp-session-id"]
    done = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    assert (await http.post(url, json=done, headers={**JSON_AND_SSE, "Mcp-Session-Id": session})).status_code == 202
    return session


async def _redescribe(http: httpx.AsyncClient, url: str, session: str, request_id: int) -> None:
    call = {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": "redescribe", "arguments": {"description": f"call {request_id}"}},
    }
    answer = await http.post(url, json=call, headers={**JSON_AND_SSE, "Mcp-Session-Id": session})
    assert answer.status_code == 200
    assert "redescribed" in answer.text


async def _events(response: httpx.Response) -> AsyncIterator[tuple[str | None, dict[str, Any] | None]]:
    """(event id, JSON message or None for a priming event) of each SSE event."""
    event_id: str | None = None
    data: list[str] = []
    async for line in response.aiter_lines():
        if line.startswith("id:"):
            event_id = line[3:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif line == "":
            if event_id is not None or data:
                text = "\n".join(data)
                yield event_id, (json.loads(text) if text else None)
            event_id, data = None, []


async def test_another_sessions_event_id_resumes_nothing_of_it(server: ServerProcess) -> None:
    url = server.url
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        alice = await _open_session(http, url)
        bob = await _open_session(http, url)

        # Alice listens on her GET stream and hears a list change: an event with an id.
        alice_ids: list[str] = []
        async with http.stream("GET", url, headers={"Accept": "text/event-stream", "Mcp-Session-Id": alice}) as get:
            assert get.status_code == 200  # the stream is registered before its headers are sent
            await _redescribe(http, url, alice, 2)
            await _redescribe(http, url, alice, 3)
            with anyio.fail_after(TIMEOUT):
                async for event_id, message in _events(get):
                    if event_id is not None and message is not None:
                        alice_ids.append(event_id)
                    if len(alice_ids) == 2:
                        break
        earlier = alice_ids[0]

        # Bob presents Alice's earlier event id: her list change must not be replayed to him.
        headers = {"Accept": "text/event-stream", "Mcp-Session-Id": bob, "Last-Event-ID": earlier}
        async with http.stream("GET", url, headers=headers) as get:
            if get.status_code != 200:
                return  # refused outright: nothing of Alice's reached Bob
            await _redescribe(http, url, bob, 4)  # Bob's own change: the first event he may hear
            with anyio.fail_after(TIMEOUT):
                async for event_id, message in _events(get):
                    if message is None:
                        continue
                    assert event_id not in alice_ids, f"Bob was replayed Alice's event {event_id}: {message}"
                    assert message.get("method") == "notifications/tools/list_changed"
                    break
