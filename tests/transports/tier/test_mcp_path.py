"""McpPath alone: 404 elsewhere, the endpoint (with or without a trailing slash), WebSocket forked off."""

from __future__ import annotations

from mcplane.transports.tier.mcp_path import McpPath
from tests.transports.tier.asgi import Endpoint, drive, http_scope, refusal_of, websocket_scope


def _layer() -> tuple[McpPath, Endpoint, Endpoint]:
    endpoint, websocket = Endpoint(), Endpoint()
    return McpPath(endpoint, "/mcp", websocket=websocket), endpoint, websocket


async def test_another_path_is_404_with_a_jsonrpc_body() -> None:
    layer, endpoint, _ = _layer()
    answer = await drive(layer, http_scope(path="/elsewhere"))
    assert answer.status == 404
    assert refusal_of(answer) == {"code": -32600, "message": "no such endpoint", "data": {"code": "not_found"}}
    assert endpoint.scopes == []


async def test_the_endpoint_path_passes_with_or_without_a_trailing_slash() -> None:
    layer, endpoint, websocket = _layer()
    assert (await drive(layer, http_scope(path="/mcp"))).status == 200
    assert (await drive(layer, http_scope(path="/mcp/"))).status == 200
    assert (len(endpoint.scopes), websocket.scopes) == (2, [])


async def test_a_websocket_goes_to_the_websocket_transport_whatever_its_path() -> None:
    layer, endpoint, websocket = _layer()

    async def connect() -> dict[str, str]:
        return {"type": "websocket.connect"}

    await drive(layer, websocket_scope(path="/elsewhere"), connect)
    assert (endpoint.scopes, len(websocket.scopes)) == ([], 1)
