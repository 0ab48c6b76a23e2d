"""ProviderRoutes alone: a provider's endpoint answers its own path; everything else passes."""

from __future__ import annotations

from mcplane.layers import Route
from mcplane.transports.tier.routes import ProviderRoutes
from tests.transports.tier.asgi import Endpoint, drive, http_scope, websocket_scope


async def test_a_provider_route_answers_its_path_and_nothing_else() -> None:
    endpoint, route = Endpoint(), Endpoint()
    routes: dict[str, Route] = {"/integrity/quarantine": route}
    layer = ProviderRoutes(endpoint, routes)
    assert (await drive(layer, http_scope("GET", "/integrity/quarantine"))).status == 200
    assert (await drive(layer, http_scope("POST", "/mcp"))).status == 200
    assert ([s["path"] for s in route.scopes], [s["path"] for s in endpoint.scopes]) == (
        ["/integrity/quarantine"],
        ["/mcp"],
    )


async def test_a_route_added_after_the_layer_was_built_is_served() -> None:
    route = Endpoint()
    routes: dict[str, Route] = {}
    layer = ProviderRoutes(Endpoint(), routes)
    routes["/late"] = route
    await drive(layer, http_scope("GET", "/late"))
    assert len(route.scopes) == 1


async def test_a_websocket_is_never_a_provider_route() -> None:
    endpoint, route = Endpoint(), Endpoint()

    async def connect() -> dict[str, str]:
        return {"type": "websocket.connect"}

    await drive(ProviderRoutes(endpoint, {"/mcp": route}), websocket_scope("/mcp"), connect)
    assert (len(endpoint.scopes), route.scopes) == (1, [])
