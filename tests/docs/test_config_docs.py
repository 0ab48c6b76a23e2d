"""docs/mcplane.yaml loads and passes ``mcplane config check``; docs/configuration.md documents
exactly the keys the config model has, and the names and codes the code uses."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
import types
from pathlib import Path
from typing import Any, Union, get_args, get_origin

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import BaseModel

from mcplane import Plane, errors
from mcplane.config import PlaneConfig, ToolPolicySection, load_config
from mcplane.context import TIMEOUT_HEADER, TIMEOUT_META_KEY

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "mcplane.yaml"
GUIDE = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")

EXAMPLE_ENV = {
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "MCPLANE_JWT_SECRET": "an-hs256-secret-of-at-least-32-bytes!",
    "MCPLANE_CACHE_KEY": Fernet.generate_key().decode(),
    "MCPLANE_OAUTH_SIGNING_KEY": ec.generate_private_key(ec.SECP256R1())
    .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    .decode(),
    "MCPLANE_OAUTH_STATE_KEY": "a-state-key-of-at-least-32-bytes-long!",
    "GOOGLE_CLIENT_ID": "1234-example.apps.googleusercontent.com",
    "GOOGLE_CLIENT_SECRET": "a-google-client-secret",
}
"""A value for each ``${env:...}`` the example references (a new reference must be added here)."""


def _example_env() -> dict[str, str]:
    live = "\n".join(line.split("#", 1)[0] for line in EXAMPLE.read_text(encoding="utf-8").splitlines())
    referenced = set(re.findall(r"\$\{env:([^}]+)\}", live))
    assert referenced <= set(EXAMPLE_ENV), f"give the test a value for {sorted(referenced - set(EXAMPLE_ENV))}"
    return {name: EXAMPLE_ENV[name] for name in referenced}


# ------------------------------------------------------------------ the example file
def test_the_example_loads_with_every_section() -> None:
    config = load_config(EXAMPLE, environ=_example_env())
    for section in PlaneConfig.model_fields:
        assert getattr(config, section), f"docs/mcplane.yaml should show the {section!r} section"
    assert config.policy_for("billing_charge")["timeout"] == 2.0
    assert config.policy_for("generate_report")["rate_limit"] == "off"


def test_the_example_passes_config_check() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mcplane.cli", "config", "check", str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **_example_env()},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1] == "  layers configured: auth, authorization, rate_limit, cache, budget, audit"
    for value in EXAMPLE_ENV.values():
        assert value not in done.stdout


# ------------------------------------------------------------------ the model's keys
def _models(annotation: Any) -> list[type[BaseModel]]:
    """The config models inside an annotation (through Optional, unions, lists and dict values)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin is dict:
        args = args[1:]
    if origin in (list, dict, Union, types.UnionType) or args:
        return [model for arg in args for model in _models(arg)]
    return []


def _paths(model: type[BaseModel], prefix: str = "") -> tuple[set[str], set[str]]:
    """``(leaves, containers)``: dotted paths of every key, with ``[]`` for lists of models and
    ``<glob>`` for mappings of them."""
    leaves: set[str] = set()
    containers: set[str] = set()
    for name, field in model.model_fields.items():
        path = prefix + name
        inner = _models(field.annotation)
        if not inner:
            leaves.add(path)
            continue
        containers.add(path)
        origin = get_origin(field.annotation)
        nested = {get_origin(arg) for arg in get_args(field.annotation)} | {origin}
        step = ".<glob>." if dict in nested else "[]." if list in nested else "."
        for sub in inner:
            sub_leaves, sub_containers = _paths(sub, path + step)
            leaves |= sub_leaves
            containers |= sub_containers
    return leaves, containers


def _documented() -> set[str]:
    """Every key path the guide's section tables document: ``### `section` `` plus the first cell."""
    sections = GUIDE.split("## Sections", 1)[1].split("\n## ", 1)[0]
    paths: set[str] = set()
    for block in re.split(r"^### ", sections, flags=re.M)[1:]:
        heading, _, body = block.partition("\n")
        section = re.fullmatch(r"`(\w+)`", heading.strip())
        assert section is not None, f"a section heading names one key: {heading!r}"
        paths.add(section.group(1))
        for row in re.findall(r"^\| (`.+?) \|", body, flags=re.M):
            for key in re.findall(r"`([^`]+)`", row):
                key = re.sub(r"<[^>]+>", "<glob>", key)
                paths.add(f"{section.group(1)}.{key}")
    return paths


def test_every_documented_key_exists_in_the_model() -> None:
    leaves, containers = _paths(PlaneConfig)
    unknown = _documented() - leaves - containers
    assert not unknown, f"docs/configuration.md documents keys the model does not have: {sorted(unknown)}"


def test_every_key_of_the_model_is_documented() -> None:
    leaves, _ = _paths(PlaneConfig)
    missing = leaves - _documented()
    assert not missing, f"docs/configuration.md does not document: {sorted(missing)}"
    assert {path.split(".")[0] for path in _documented()} == set(PlaneConfig.model_fields)


def test_every_key_appears_in_the_annotated_example() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    leaves, containers = _paths(PlaneConfig)
    names = {path.rsplit(".", 1)[-1].removesuffix("[]") for path in leaves | containers}
    absent = sorted(name for name in names if not re.search(rf"(^|[\s{{,#-]){re.escape(name)}:", text, flags=re.M))
    assert not absent, f"docs/mcplane.yaml does not show: {absent}"


def test_the_tools_policy_keys_are_the_decorators_keywords() -> None:
    documented = {path.split(".", 2)[2] for path in _documented() if path.startswith("tools.<glob>.")}
    assert documented == set(ToolPolicySection.model_fields)
    keywords = set(inspect.signature(Plane.tool).parameters)
    assert set(ToolPolicySection.model_fields) <= keywords


# ------------------------------------------------------------------ names and codes
def test_the_deadline_names_are_the_codes() -> None:
    assert f"| `_meta` key | `{TIMEOUT_META_KEY}` |" in GUIDE
    header = next(line for line in GUIDE.splitlines() if line.startswith("| HTTP header |"))
    assert header.split("`")[1].lower().encode() == TIMEOUT_HEADER


def test_the_error_codes_are_the_codes() -> None:
    table = GUIDE.split("## Error codes", 1)[1].split("\n## ", 1)[0]
    documented = {code: retryable for code, retryable in re.findall(r"^\| `(\w+)` \| (yes|no) \|", table, flags=re.M)}
    classes = [
        cls
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.MCPlaneError) and cls.__module__ == errors.__name__
    ]
    codes = {cls.code: cls.retryable for cls in classes if cls not in (errors.MCPlaneError, errors.ConfigError)}
    assert set(documented) == set(codes)
    for code, retryable in codes.items():
        assert documented[code] == ("yes" if retryable else "no"), code
    assert f"`{errors.ConfigError.code}`" in table


def test_the_auth_refusal_reasons_are_the_codes() -> None:
    from mcplane.auth.errors import REASONS

    listed = GUIDE.split("Refusals carry a reason", 1)[1].split("\n\n", 1)[0]
    assert set(re.findall(r"`(\w+)`", listed)) == set(REASONS)
