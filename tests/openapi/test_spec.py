"""Documents into tools: the three versions, the dialect translated, filters, and bad input refused clearly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import yaml

from mcplane.errors import ConfigError
from mcplane.gateway import parse_gateway_config
from mcplane.openapi import load_api
from tests.openapi.conftest import SHOP, SPECS


def _gateway(tmp_path: Path, document: Any, **openapi: Any) -> Any:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(document) if not isinstance(document, str) else document)
    tree = {"upstreams": {"api": {"openapi": {"spec": str(spec), "base_url": "http://127.0.0.1:9", **openapi}}}}
    return parse_gateway_config(tree, source="gateway.yaml")


def _doc(paths: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"openapi": "3.0.3", "info": {"title": "t", "version": "1"}, "paths": paths, **extra}


_OK = {"200": {"description": "ok"}}


def test_every_generated_schema_compiles_as_json_schema_2020_12() -> None:
    for name in ("shop.yaml", "petstore-2.0.yaml", "notes-3.1.yaml"):
        api = load_api({"spec": str(SPECS / name), "base_url": "http://127.0.0.1:9"})
        for op in api.operations.values():
            for schema in (op.tool.input_schema, op.tool.output_schema):
                if schema is not None:
                    jsonschema_rs.Draft202012Validator(schema)


def test_openapi_30_nullable_and_refs_become_json_schema() -> None:
    api = load_api({"spec": str(SHOP), "base_url": "http://127.0.0.1:9"})
    item = api.operations["getItem"].tool.output_schema
    assert item is not None
    assert item["$defs"]["Item"]["properties"]["note"] == {"type": ["string", "null"]}
    validator = jsonschema_rs.Draft202012Validator(item)
    assert validator.is_valid({"id": 1, "name": "a", "price": 1, "note": None})
    assert not validator.is_valid({"id": 1, "name": "a", "price": 1, "note": 3})


def test_swagger_20_body_form_and_definitions() -> None:
    api = load_api({"spec": str(SPECS / "petstore-2.0.yaml")})
    assert api.version == "2.0"
    assert api.base_urls == ["https://petstore.example.com/v2"]
    add = api.operations["addPet"]
    assert add.body is not None
    assert add.body.media == "json"
    assert add.tool.input_schema["required"] == ["name"]
    assert add.tool.input_schema["properties"]["tag"] == {"type": ["string", "null"]}
    assert api.operations["listPets"].tool.input_schema["properties"]["limit"] == {
        "type": "integer",
        "exclusiveMaximum": 100,
    }
    form = api.operations["updatePetForm"]
    assert form.body is not None
    assert form.body.media == "form"
    assert api.skipped == [("POST /pets/{petId}/photo", "a file upload (formData type: file) is not supported")]


def test_openapi_31_composition_type_arrays_and_server_variables() -> None:
    api = load_api({"spec": str(SPECS / "notes-3.1.yaml")})
    assert api.version == "3.1"
    assert api.base_urls == ["https://eu.notes.example.com/v1"]
    note = api.operations["getNote"].tool.output_schema
    assert note is not None
    assert "discriminator" not in json.dumps(note)
    assert note["$defs"]["Note"]["properties"]["due"]["type"] == ["string", "null"]
    validator = jsonschema_rs.Draft202012Validator(note)
    assert validator.is_valid({"id": "1", "text": "t", "kind": {"type": "todo", "done": True}, "pinned": True})
    assert not validator.is_valid({"id": "1", "text": "t", "kind": {"type": "other"}})
    assert "put_notes_id" in api.operations  # no operationId: named after method and path
    assert api.operations["put_notes_id"].tool.annotations.idempotent_hint is True  # pyright: ignore[reportOptionalMemberAccess]
    assert api.skipped[0][0] == "PUT /notes/{id}/raw"
    assert "octet-stream" in api.skipped[0][1]


def test_filters_by_tag_path_operation_and_method() -> None:
    def names(**options: Any) -> set[str]:
        return set(load_api({"spec": str(SHOP), "base_url": "http://127.0.0.1:9", **options}).operations)

    assert names(include={"tags": ["items"]}) == {"listItems", "createItem", "getItem", "deleteItem"}
    assert names(include={"tags": ["items"], "methods": ["GET"]}) == {"listItems", "getItem"}
    assert names(include={"paths": ["/items/*"]}) == {"getItem", "deleteItem"}
    assert "boom" not in names(exclude={"operations": ["boo*"]})
    assert names(include={"operations": ["get_things_*"]}) == {"get_things_id"}
    api = load_api({"spec": str(SHOP), "base_url": "http://x.test", "include": {"tags": ["items"]}})
    assert api.total == 18
    assert len(api.skipped) == 14


def test_annotations_follow_the_method_and_can_be_overridden() -> None:
    api = load_api(
        {
            "spec": str(SHOP),
            "base_url": "http://127.0.0.1:9",
            "operations": {"POST /flaky": {"annotations": {"idempotentHint": True}}},
        }
    )
    get = api.operations["getItem"].tool.annotations
    post = api.operations["createItem"].tool.annotations
    assert get is not None
    assert get.read_only_hint
    assert get.idempotent_hint
    assert post is not None
    assert not post.read_only_hint
    assert not post.idempotent_hint
    assert api.operations["flakyWrite"].tool.annotations.idempotent_hint is True  # pyright: ignore[reportOptionalMemberAccess]


# ----------------------------------------------------------------- bad input: one ConfigError, with the pointer
def test_an_invalid_document_names_the_key_path_and_the_pointer(tmp_path: Path) -> None:
    bad = _doc({"/a": {"get": {"parameters": [{"name": "q", "in": "nowhere"}], "responses": _OK}}})
    with pytest.raises(ConfigError) as caught:
        _gateway(tmp_path, bad)
    message = str(caught.value)
    assert message.startswith("gateway.yaml: upstreams.api.openapi: spec #/paths/~1a/get/parameters/0: invalid")


def test_a_missing_operation_id_falls_back_to_method_and_path(tmp_path: Path) -> None:
    config = _gateway(tmp_path, _doc({"/users/keys": {"delete": {"responses": _OK}}}))
    api = config.upstreams["api"].openapi.api
    assert list(api.operations) == ["delete_users_keys"]


def test_full_validation_adds_the_semantic_checks(tmp_path: Path) -> None:
    undeclared = _doc({"/users/{id}/keys": {"delete": {"operationId": "dropKeys", "responses": _OK}}})
    api = _gateway(tmp_path, undeclared).upstreams["api"].openapi.api  # the JSON Schema allows it
    assert api.skipped == [("DELETE /users/{id}/keys", "path parameter 'id' is not declared")]
    with pytest.raises(ConfigError, match=r"spec #: invalid: Path parameter 'id' for 'delete' operation"):
        _gateway(tmp_path, undeclared, validate_spec="full")


def test_a_ref_cycle_is_refused_with_its_chain(tmp_path: Path) -> None:
    doc = _doc(
        {
            "/a": {
                "get": {
                    "responses": {
                        "200": {
                            "description": "ok",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/A"}}},
                        }
                    }
                }
            }
        },
        components={"schemas": {"A": {"$ref": "#/components/schemas/B"}, "B": {"$ref": "#/components/schemas/A"}}},
    )
    with pytest.raises(ConfigError, match=r"\$ref cycle: #/components/schemas/A -> #/components/schemas/B -> #/comp"):
        _gateway(tmp_path, doc, validate_spec=False)


def test_a_recursive_schema_is_fine(tmp_path: Path) -> None:
    node = {"type": "object", "properties": {"next": {"$ref": "#/components/schemas/Node"}}}
    doc = _doc(
        {
            "/a": {
                "get": {
                    "responses": {
                        "200": {
                            "description": "ok",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Node"}}},
                        }
                    }
                }
            }
        },
        components={"schemas": {"Node": node}},
    )
    api = _gateway(tmp_path, doc).upstreams["api"].openapi.api
    output = api.operations["get_a"].tool.output_schema
    assert output["$defs"]["Node"]["properties"]["next"] == {"$ref": "#/$defs/Node"}


def test_a_dangling_or_external_ref_is_refused(tmp_path: Path) -> None:
    dangling = _doc({"/a": {"get": {"parameters": [{"$ref": "#/components/parameters/Nope"}], "responses": _OK}}})
    with pytest.raises(ConfigError, match=r"spec #/paths/~1a/get/parameters/0: \$ref '#/components/parameters/Nope'"):
        _gateway(tmp_path, dangling, validate_spec=False)
    external = _doc({"/a": {"get": {"parameters": [{"$ref": "other.yaml#/P"}], "responses": _OK}}})
    with pytest.raises(ConfigError, match=r"spec #/paths/~1a/get/parameters/0: \$ref 'other.yaml#/P': only local"):
        _gateway(tmp_path, external)


def test_an_unreachable_spec_url_is_one_clear_error() -> None:
    from tests.conftest import free_port

    url = f"http://127.0.0.1:{free_port()}/openapi.json"
    tree = {"upstreams": {"api": {"openapi": {"spec": url, "fetch_timeout": 5}}}}
    with pytest.raises(ConfigError, match=r"upstreams.api.openapi: spec #: cannot fetch http://127.0.0.1:\d+/openapi"):
        parse_gateway_config(tree, source="gateway.yaml")


def test_a_missing_file_and_garbage_are_clear(tmp_path: Path) -> None:
    tree = {"upstreams": {"api": {"openapi": {"spec": str(tmp_path / "nope.yaml")}}}}
    with pytest.raises(ConfigError, match="spec #: cannot read"):
        parse_gateway_config(tree)
    with pytest.raises(ConfigError, match="spec #: neither JSON nor YAML"):
        _gateway(tmp_path, "{not: [json")
    with pytest.raises(ConfigError, match=r"spec #: no 'openapi: 3.x'"):
        _gateway(tmp_path, {"info": {}})
    with pytest.raises(ConfigError, match=r"spec #/openapi: unsupported version '4.0.0'"):
        _gateway(tmp_path, {"openapi": "4.0.0", "paths": {}})


def test_an_oversized_document_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    big = _doc({f"/p{i}": {"get": {"responses": _OK}} for i in range(2000)})
    with pytest.raises(ConfigError, match=r"spec #: larger than max_spec_bytes \(\d+ > 4096 bytes\)"):
        _gateway(tmp_path, big, max_spec_bytes=4096)


def test_deep_nesting_is_refused_with_where(tmp_path: Path) -> None:
    deep: dict[str, Any] = {"type": "string"}
    for _ in range(200):
        deep = {"type": "object", "properties": {"x": deep}}
    doc = _doc(
        {
            "/a": {
                "get": {"responses": {"200": {"description": "ok", "content": {"application/json": {"schema": deep}}}}}
            }
        }
    )
    with pytest.raises(
        ConfigError, match=r"spec #/paths/~1a/get/responses/200/content/.*: nested deeper than max_depth \(64\)"
    ):
        _gateway(tmp_path, doc)
    very_deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(ConfigError, match="spec #: "):
        _gateway(tmp_path, very_deep)


def test_yaml_alias_bombs_are_bounded(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    lines.append("openapi: 3.0.3\ninfo: {title: t, version: '1'}\npaths: {}")
    with pytest.raises(ConfigError, match=r"too many nodes|nested deeper"):
        _gateway(tmp_path, "\n".join(lines))


def test_config_mistakes_name_their_key(tmp_path: Path) -> None:
    spec = str(SHOP)
    with pytest.raises(ConfigError, match=r"upstreams.api.openapi.auth: .*one of bearer, api_key, basic, oauth2"):
        parse_gateway_config(
            {
                "upstreams": {
                    "api": {
                        "openapi": {"spec": spec, "auth": {"bearer": "a", "basic": {"username": "u", "password": "p"}}}
                    }
                }
            }
        )
    with pytest.raises(ConfigError, match=r"upstreams.api.endpoints: an openapi upstream's endpoints"):
        parse_gateway_config(
            {
                "upstreams": {
                    "api": {
                        "openapi": {"spec": spec, "base_url": "http://x.test"},
                        "endpoints": [{"url": "http://x.test/mcp"}],
                    }
                }
            }
        )
    with pytest.raises(ConfigError, match=r"identity: meta travels in MCP _meta"):
        parse_gateway_config(
            {"upstreams": {"api": {"openapi": {"spec": spec, "base_url": "https://x.test"}, "identity": "meta"}}}
        )
    with pytest.raises(ConfigError, match=r"fixed argument 'nope' is not an argument"):
        parse_gateway_config(
            {
                "upstreams": {
                    "api": {
                        "openapi": {
                            "spec": spec,
                            "base_url": "http://x.test",
                            "operations": {"getItem": {"fixed": {"nope": 1}}},
                        }
                    }
                }
            }
        )
    with pytest.raises(ConfigError, match=r"'missingOp' names no operation"):
        parse_gateway_config(
            {
                "upstreams": {
                    "api": {
                        "openapi": {
                            "spec": spec,
                            "base_url": "http://x.test",
                            "operations": {"missingOp": {"name": "x"}},
                        }
                    }
                }
            }
        )


def test_committed_specs_are_valid_yaml() -> None:
    for path in SPECS.iterdir():
        assert isinstance(yaml.safe_load(path.read_text()), dict)
