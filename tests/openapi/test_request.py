"""How a tool's arguments become the HTTP request: parameter styles, bodies, and hostile values refused."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mcplane.errors import InvalidArguments
from mcplane.openapi import API, load_api
from mcplane.openapi.rest import build_request

_OK = {"200": {"description": "ok"}}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> API:
    def q(name: str, schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {"name": name, "in": "query", "schema": schema, **extra}

    array = {"type": "array", "items": {"type": "string"}}
    document = {
        "openapi": "3.0.3",
        "info": {"title": "t", "version": "1"},
        "paths": {
            "/files/{name}": {
                "get": {
                    "operationId": "styles",
                    "parameters": [
                        {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
                        q("tags", array),
                        q("ids", array, explode=False),
                        q("piped", array, style="pipeDelimited", explode=False),
                        q("filter", {"type": "object"}, style="deepObject", explode=True),
                        q("flag", {"type": "boolean"}),
                        {"name": "X-Trace", "in": "header", "schema": {"type": "string"}},
                        {"name": "Accept", "in": "header", "schema": {"type": "string"}},
                    ],
                    "responses": _OK,
                },
                "put": {
                    "operationId": "upload",
                    "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"type": "object", "properties": {"note": {"type": "string"}}}
                            }
                        },
                    },
                    "responses": _OK,
                },
            }
        },
    }
    spec = tmp_path_factory.mktemp("request") / "spec.json"
    spec.write_text(json.dumps(document))
    return load_api({"spec": str(spec), "base_url": "http://127.0.0.1:9"})


def test_parameter_styles(api: API) -> None:
    op = api.operations["styles"]
    assert "Accept" not in op.tool.input_schema["properties"]  # the gateway sets it
    arguments = {
        "name": "a b/c",
        "tags": ["x", "y"],
        "ids": [1, 2],
        "piped": ["p", "q"],
        "filter": {"status": "open", "n": 3},
        "flag": True,
        "X-Trace": "t-1",
    }
    path, query, headers, _, body = build_request(op, arguments)
    assert path == "/files/a%20b%2Fc"
    assert query == [
        ("tags", "x"),
        ("tags", "y"),
        ("ids", "1,2"),
        ("piped", "p|q"),
        ("filter[status]", "open"),
        ("filter[n]", "3"),
        ("flag", "true"),
    ]
    assert headers == {"X-Trace": "t-1"}
    assert body == {}


def test_a_required_spread_body_is_sent_even_empty(api: API) -> None:
    _, _, headers, _, body = build_request(api.operations["upload"], {"name": "f"})
    assert body == {"content": b"{}"}
    assert headers["Content-Type"] == "application/json"
    _, _, _, _, body = build_request(api.operations["upload"], {"name": "f", "note": "ü"})
    assert json.loads(body["content"]) == {"note": "ü"}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"name": ".."}, "is not a path segment"),
        ({"name": "."}, "is not a path segment"),
        ({"name": ""}, "is not a path segment"),
        ({"name": "ok", "X-Trace": "a\r\nSet-Cookie: x=1"}, "may not contain line breaks"),
        ({}, "missing path argument 'name'"),
    ],
)
def test_hostile_values_are_refused(api: API, arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArguments, match=message):
        build_request(api.operations["styles"], arguments)
