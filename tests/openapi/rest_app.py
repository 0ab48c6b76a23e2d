"""A real REST service for the OpenAPI tests (``python rest_app.py PORT``), described by specs/shop.yaml.

Bearer ``t0ken`` guards ``/items``; ``/keyed`` wants the API key ``X-Api-Key: k3y``; ``/login``
takes a form body. ``/_stats`` tells the tests what it saw (calls per flaky key, the last
request's headers); ``/_reset`` forgets it. The OAuth2 client ``rotating`` first gets a token
the API refuses (as if revoked), then a good one.
"""

from __future__ import annotations

import base64
import sys
from typing import Any

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

TOKEN = "t0ken"
API_KEY = "k3y"
ITEMS: dict[int, dict[str, Any]] = {i: {"id": i, "name": f"item-{i}", "price": i * 10, "tags": []} for i in range(1, 8)}
STATS: dict[str, Any] = {"flaky": {}, "headers": {}, "tokens": 0}


def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


def authorized(request: Request) -> bool:
    return request.headers.get("authorization") == f"Bearer {TOKEN}"


async def health(request: Request) -> Response:
    return JSONResponse({"ok": True})


async def list_items(request: Request) -> Response:
    STATS["headers"] = dict(request.headers)
    if not authorized(request):
        return problem(401, "Unauthorized", "a bearer token is required")
    page = int(request.query_params.get("page", "1"))
    per_page = int(request.query_params.get("per_page", "3"))
    tags = request.query_params.getlist("tag")
    items = [i for i in ITEMS.values() if all(t in i["tags"] for t in tags)]
    chunk = items[(page - 1) * per_page : page * per_page]
    more = page * per_page < len(items)
    return JSONResponse({"items": chunk, "page": page, "next_page": page + 1 if more else None})


async def get_item(request: Request) -> Response:
    STATS["headers"] = dict(request.headers)
    if not authorized(request):
        return problem(401, "Unauthorized", "a bearer token is required")
    item = ITEMS.get(int(request.path_params["item_id"]))
    if item is None:
        return problem(404, "Not Found", f"no item {request.path_params['item_id']}")
    return JSONResponse(item)


async def create_item(request: Request) -> Response:
    if not authorized(request):
        return problem(401, "Unauthorized", "a bearer token is required")
    body = await request.json()
    if body.get("price", 0) < 0:
        return problem(422, "Unprocessable Entity", "price must not be negative", errors=[{"field": "price"}])
    new_id = max(ITEMS) + 1
    ITEMS[new_id] = {"id": new_id, "name": body["name"], "price": body.get("price", 0), "tags": body.get("tags", [])}
    return JSONResponse(ITEMS[new_id], status_code=201)


async def delete_item(request: Request) -> Response:
    if not authorized(request):
        return problem(401, "Unauthorized", "a bearer token is required")
    ITEMS.pop(int(request.path_params["item_id"]), None)
    return Response(status_code=204)


async def login(request: Request) -> Response:
    form = await request.form()
    if form.get("password") != "secret":
        return problem(403, "Forbidden", "wrong password")
    return JSONResponse({"user": form.get("username"), "remember": form.get("remember")})


async def keyed(request: Request) -> Response:
    if request.headers.get("x-api-key") != API_KEY:
        return problem(401, "Unauthorized", "an API key is required")
    return JSONResponse({"ok": True})


async def cookie_key(request: Request) -> Response:
    return JSONResponse({"session": request.cookies.get("session"), "lang": request.cookies.get("lang")})


async def limited(request: Request) -> Response:
    return JSONResponse({"message": "slow down"}, status_code=429, headers={"Retry-After": "7"})


async def boom(request: Request) -> Response:
    return problem(500, "Internal Server Error", "the database is on fire")


async def conflict(request: Request) -> Response:
    return problem(409, "Conflict", "already exists")


async def moved(request: Request) -> Response:
    return Response(status_code=302, headers={"Location": "https://elsewhere.example/"})


async def slow(request: Request) -> Response:
    await anyio.sleep(float(request.query_params.get("seconds", "5")))
    return JSONResponse({"slept": True})


async def flaky(request: Request) -> Response:
    key = request.query_params["key"]
    fails = int(request.query_params.get("fails", "2"))
    count = STATS["flaky"].get(key, 0) + 1
    STATS["flaky"][key] = count
    if count <= fails:
        return problem(503, "Service Unavailable", f"attempt {count} fails")
    return JSONResponse({"attempts": count})


async def headers(request: Request) -> Response:
    STATS["headers"] = dict(request.headers)
    return JSONResponse({"headers": dict(request.headers), "query": list(request.query_params.multi_items())})


async def thing(request: Request) -> Response:
    return JSONResponse({"path_id": request.path_params["id"], "query_id": request.query_params.get("id")})


async def big(request: Request) -> Response:
    return JSONResponse({"data": "x" * int(request.query_params.get("size", "100000"))})


async def token(request: Request) -> Response:
    form = await request.form()
    if form.get("grant_type") != "client_credentials" or request.headers.get("authorization") is None:
        return JSONResponse({"error": "invalid_client"}, status_code=401)
    STATS["tokens"] += 1
    basic = base64.b64decode(request.headers["authorization"].removeprefix("Basic ")).decode()
    stale = basic.startswith("rotating:") and STATS["tokens"] == 1  # this client's first token is already revoked
    return JSONResponse({"access_token": "revoked" if stale else TOKEN, "token_type": "Bearer", "expires_in": 3600})


async def stats(request: Request) -> Response:
    return JSONResponse(STATS)


async def reset(request: Request) -> Response:
    STATS.update({"flaky": {}, "headers": {}, "tokens": 0})
    return JSONResponse({"ok": True})


app = Starlette(
    routes=[
        Route("/health", health),
        Route("/items", list_items, methods=["GET"]),
        Route("/items", create_item, methods=["POST"]),
        Route("/items/{item_id:int}", get_item, methods=["GET"]),
        Route("/items/{item_id:int}", delete_item, methods=["DELETE"]),
        Route("/login", login, methods=["POST"]),
        Route("/keyed", keyed),
        Route("/cookies", cookie_key),
        Route("/limited", limited),
        Route("/boom", boom),
        Route("/conflict", conflict, methods=["POST"]),
        Route("/slow", slow),
        Route("/moved", moved),
        Route("/flaky", flaky, methods=["GET", "POST"]),
        Route("/headers", headers),
        Route("/things/{id}", thing),
        Route("/big", big),
        Route("/oauth/token", token, methods=["POST"]),
        Route("/_stats", stats),
        Route("/_reset", reset, methods=["POST"]),
    ]
)

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", timeout_graceful_shutdown=1)
