"""docs/gateway.md says what the gateway does: its YAML examples load, the complete one shows every
gateway key, its Python snippet runs, and its lists (reloadable sections, caller codes) are the code's."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, get_args, get_origin

import pytest
from pydantic import BaseModel

from mcplane import Plane
from mcplane.config import PlaneConfig
from mcplane.gateway import Gateway
from mcplane.gateway.config import GatewayConfig, load_gateway_config
from mcplane.gateway.reload import Reloader
from mcplane.gateway.versions import CALLER_CODES
from mcplane.openapi import OpenAPIConfig

ROOT = Path(__file__).resolve().parents[2]
GUIDE = (ROOT / "docs" / "gateway.md").read_text(encoding="utf-8")
YAML_BLOCKS = re.findall(r"```yaml\n(.*?)```", GUIDE, flags=re.S)
ENV = {"BILLING_API_KEY": "k-123", "LEDGER_CLIENT_SECRET": "s-456"}


def _load(tmp_path: Path, text: str) -> GatewayConfig:
    file = tmp_path / "gateway.yaml"
    file.write_text(text, encoding="utf-8")
    return load_gateway_config(file, environ=ENV)


@pytest.mark.parametrize("index", range(len(YAML_BLOCKS)))
def test_every_yaml_example_loads(index: int, tmp_path: Path) -> None:
    config = _load(tmp_path, YAML_BLOCKS[index])
    assert config.upstreams


def test_the_complete_example(tmp_path: Path) -> None:
    complete = GUIDE.split("## A complete `gateway.yaml`", 1)[1]
    (text,) = re.findall(r"```yaml\n(.*?)```", complete, flags=re.S)[:1]
    config = _load(tmp_path, text)
    assert config.namespace_of("billing") == "bill"
    assert config.upstreams["billing"].headers["X-Api-Key"].get() == "k-123"
    assert config.target_of("users__fetch_user", "v2") == "users_v2__fetch_user"
    versioned = config.versions["users__fetch_user"]
    assert versioned.canary is not None
    assert versioned.canary.weight == 0.1
    assert versioned.rollback is not None
    assert versioned.rollback.window == 60
    assert config.reload.interval == 2
    assert config.plane.policy_for("everything__echo")["timeout"] == 15

    names: set[str] = set()
    for field in ("upstreams", "versions", "reload", "shared_state", "integrity", "discovery"):
        names |= _keys(GatewayConfig.model_fields[field].annotation)
    names.discard("openapi")  # the openapi: section has its own page (docs/openapi.md, test_openapi_docs.py)
    absent = sorted(name for name in names if not re.search(rf"(^|[\s{{,]){re.escape(name)}:", text, flags=re.M))
    assert not absent, f"the complete example in docs/gateway.md does not show: {absent}"


def _keys(annotation: Any) -> set[str]:
    """Every key name of the config models inside an annotation."""
    if annotation is OpenAPIConfig:
        return set()
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        found: set[str] = set()
        for name, field in annotation.model_fields.items():
            found |= {name} | _keys(field.annotation)
        return found
    return (
        {name for arg in get_args(annotation) for name in _keys(arg)}
        if get_origin(annotation) or get_args(annotation)
        else set()
    )


def test_the_python_snippet_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (snippet,) = re.findall(r"```python\n(.*?)```", GUIDE, flags=re.S)
    (tmp_path / "gateway.yaml").write_text(YAML_BLOCKS[0], encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    runs: list[dict[str, Any]] = []
    monkeypatch.setattr(Plane, "run", lambda self, **options: runs.append(options))  # pyright: ignore[reportUnknownLambdaType]
    scope: dict[str, Any] = {}
    exec(compile(snippet, "docs/gateway.md", "exec"), scope)
    plane = scope["plane"]
    assert isinstance(plane, Plane)
    assert runs == [{"transport": "http", "port": 9000}]
    assert isinstance(Gateway.provider_of(plane).reloader, Reloader)


def test_the_reload_table_names_sections_that_are_not_reloaded() -> None:
    table = GUIDE.split("## Reload", 1)[1].split("\n## ", 1)[0]
    (row,) = [line for line in table.splitlines() if "**not reloaded**" in line]
    named = set(re.findall(r"`(\w+)`", row.split("|")[1])) - {"mcplane"}
    own = set(GatewayConfig.model_fields) - {"plane", "upstreams", "versions", "reload"}
    assert own <= named, "every gateway section that a reload does not apply is named"
    assert named <= set(PlaneConfig.model_fields) | own


def test_the_caller_mistakes_are_the_codes_the_canary_ignores() -> None:
    rollback = GUIDE.split("**Automatic rollback.**", 1)[1].split("\n\n", 1)[0]
    ignored = rollback.split("A caller's mistake", 1)[1].split(")", 1)[0]
    assert set(re.findall(r"`(\w+)`", ignored)) == CALLER_CODES
