"""docs/openapi.md says what an OpenAPI upstream does: its YAML examples load, the complete one
shows every ``openapi:`` key, its Python snippet runs, and its error table is the code's."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, get_args, get_origin

import pytest
import yaml
from pydantic import BaseModel

from mcplane import Plane
from mcplane.gateway import Gateway
from mcplane.gateway.config import load_gateway_config
from mcplane.openapi import OpenAPIConfig
from mcplane.openapi.rest import MAX_DETAIL_BYTES

ROOT = Path(__file__).resolve().parents[2]
GUIDE = (ROOT / "docs" / "openapi.md").read_text(encoding="utf-8")
YAML_BLOCKS = re.findall(r"```yaml\n(.*?)```", GUIDE, flags=re.S)
ENV = {k: "x" for k in ("BILLING_TOKEN", "BILLING_CLIENT_ID", "BILLING_CLIENT_SECRET", "CRM_KEY", "WIKI_PASSWORD")}

_OK = {"200": {"description": "ok", "content": {"application/json": {"schema": {"type": "object"}}}}}
BILLING = {
    "openapi": "3.0.3",
    "info": {"title": "Billing", "version": "1"},
    "paths": {
        "/invoices": {"get": {"operationId": "listInvoices", "tags": ["invoices"], "responses": _OK}},
        "/invoices/{id}": {
            "get": {
                "operationId": "getInvoice",
                "tags": ["invoices"],
                "parameters": [
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},
                    {"name": "tenant", "in": "query", "schema": {"type": "string"}},
                ],
                "responses": _OK,
            }
        },
        "/invoices/{id}/void": {
            "post": {
                "tags": ["invoices"],
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": _OK,
            }
        },
        "/customers/{id}": {
            "delete": {
                "operationId": "deleteCustomer",
                "tags": ["customers"],
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": _OK,
            }
        },
    },
}


@pytest.fixture
def specs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("billing.yaml", "crm.yaml", "wiki.yaml"):
        (tmp_path / name).write_text(yaml.safe_dump(BILLING), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("index", range(len(YAML_BLOCKS)))
def test_every_yaml_example_loads(index: int, specs: Path) -> None:
    file = specs / "gateway.yaml"
    file.write_text(YAML_BLOCKS[index], encoding="utf-8")
    config = load_gateway_config(file, environ=ENV)
    for upstream in config.upstreams.values():
        assert upstream.openapi is not None
        assert upstream.openapi.api.operations


def test_the_complete_example_shows_every_key(specs: Path) -> None:
    complete = GUIDE.split("## A complete `openapi:` section", 1)[1]
    (text,) = re.findall(r"```yaml\n(.*?)```", complete, flags=re.S)[:1]
    file = specs / "gateway.yaml"
    file.write_text(text, encoding="utf-8")
    config = load_gateway_config(file, environ=ENV)
    upstream = config.upstreams["billing"]
    assert [e.describe() for e in upstream.endpoints] == [
        "https://billing-a.internal/v1",
        "https://billing-b.internal/v1",
    ]
    api = upstream.openapi.api  # pyright: ignore[reportOptionalMemberAccess]
    assert set(api.operations) == {"listInvoices", "get_invoice", "post_invoices_id_void"}
    assert api.operations["post_invoices_id_void"].tool.annotations.idempotent_hint is True  # pyright: ignore[reportOptionalMemberAccess]
    absent = sorted(name for name in _keys(OpenAPIConfig) if not re.search(rf"(^|[\s{{,]){re.escape(name)}:", text))
    assert not absent, f"the complete example in docs/openapi.md does not show: {absent}"


def _keys(annotation: Any) -> set[str]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        found: set[str] = set()
        for name, field in annotation.model_fields.items():
            found |= {name} | _keys(field.annotation)
        return found
    return (
        {n for arg in get_args(annotation) for n in _keys(arg)}
        if get_origin(annotation) or get_args(annotation)
        else set()
    )


def test_the_python_snippet_runs(specs: Path) -> None:
    (snippet,) = re.findall(r"```python\n(.*?)```", GUIDE, flags=re.S)
    scope: dict[str, Any] = {}
    exec(compile(snippet, "docs/openapi.md", "exec"), scope)
    plane = scope["plane"]
    assert isinstance(plane, Plane)
    assert "getInvoice" in Gateway.provider_of(plane).upstreams["billing"].catalog.tools


def test_the_error_table_is_the_codes() -> None:
    table = GUIDE.split("| The API answers", 1)[1].split("\n\n", 1)[0]
    codes = set(re.findall(r"`([a-z_]+)`", table))
    assert {"invalid_arguments", "forbidden", "not_found", "rate_limited", "upstream_error"} <= codes
    assert "dependency_unavailable" in codes
    assert f"{MAX_DETAIL_BYTES // 1024} KiB" in GUIDE


def test_the_search_example_turns_on_catalog_search(specs: Path) -> None:
    section = GUIDE.split("## A thousand operations: catalog search\n", 1)[1].split("\n## ", 1)[0]
    assert "(search.md)" in section
    (text,) = re.findall(r"```yaml\n(.*?)```", section, flags=re.S)
    file = specs / "gateway.yaml"
    file.write_text(text, encoding="utf-8")
    config = load_gateway_config(file, environ=ENV)
    assert config.discovery.mode == "search"
    for glob in config.discovery.always_list:  # names a tool the document makes
        assert glob.removeprefix("billing__") in config.upstreams["billing"].openapi.api.operations  # pyright: ignore[reportOptionalMemberAccess]
