"""Reading an OpenAPI document: fetched or read within a size cap, parsed, bounded, validated.

Validation checks the document against the OpenAPI Initiative's JSON Schema for its version (as
``openapi-spec-validator`` ships them) with ``jsonschema-rs`` — about 10 ms for GitHub's 13 MB
document; ``validate_spec: full`` also runs ``openapi-spec-validator`` itself (its semantic checks:
path parameters declared, defaults that match their schemas, ...), which takes seconds on large
documents. The first error is the one raised, with its JSON pointer.

Only local references (``#/...``) are followed: a document that refers to other files or URLs
is refused before anything is resolved, so loading never reaches the network beyond the spec
URL itself. Pointers are looked up with ``referencing`` (the JSON Schema
project's resolver, which handles ``~0``/``~1`` escapes and percent-encoding).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import yaml

__all__ = ["SpecError", "load_document", "pointer", "resolve_pointer"]


class SpecError(ValueError):
    """A document mcplane cannot turn into tools; the message names the JSON pointer."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"spec {where}: {message}")
        self.where = where


def pointer(parts: Iterator[Any] | list[Any] | tuple[Any, ...]) -> str:
    """``#/a/b~1c`` from ``["a", "b/c"]``."""
    return "#/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in parts) if parts else "#"


def _read(source: str, limit: int, timeout: float) -> bytes:
    if source.startswith(("http://", "https://")):
        import httpx

        try:
            with httpx.Client(timeout=timeout, follow_redirects=True) as client, client.stream("GET", source) as r:
                if r.status_code >= 400:
                    raise SpecError("#", f"fetching {source} answered HTTP {r.status_code}")
                data = bytearray()
                for chunk in r.iter_bytes():
                    data += chunk
                    if len(data) > limit:
                        raise SpecError("#", f"larger than max_spec_bytes ({limit} bytes)")
                return bytes(data)
        except httpx.HTTPError as exc:
            raise SpecError("#", f"cannot fetch {source}: {type(exc).__name__}: {str(exc)[:200]}") from None
    path = Path(source)
    try:
        size = path.stat().st_size
        if size > limit:
            raise SpecError("#", f"larger than max_spec_bytes ({size} > {limit} bytes)")
        return path.read_bytes()
    except OSError as exc:
        raise SpecError("#", f"cannot read {source}: {exc.strerror or exc}") from None


def _parse(data: bytes) -> Any:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SpecError("#", f"not UTF-8 (byte {exc.start})") from None
    try:
        if text.lstrip().startswith("{"):
            return json.loads(text)
        return yaml.safe_load(text)
    except RecursionError:
        raise SpecError("#", "nested too deeply to parse") from None
    except (ValueError, yaml.YAMLError) as exc:
        raise SpecError("#", f"neither JSON nor YAML: {str(exc).splitlines()[0][:200]}") from None


def _check_tree(document: Any, max_depth: int, budget: int) -> None:
    """Depth bound, node-count bound (no more nodes than the text had bytes: YAML aliases cannot
    multiply it), and local ``$ref`` only."""
    stack: list[tuple[Any, tuple[Any, ...]]] = [(document, ())]
    while stack:
        node, path = stack.pop()
        budget -= 1
        if budget < 0:
            raise SpecError("#", "too many nodes (YAML aliases expanding?)")
        if len(path) > max_depth:
            raise SpecError(pointer(path[: max_depth + 1]), f"nested deeper than max_depth ({max_depth})")
        if isinstance(node, dict):
            items = cast("dict[Any, Any]", node)
            ref = items.get("$ref")
            if isinstance(ref, str) and not ref.startswith("#"):
                raise SpecError(pointer(path), f"$ref {ref[:200]!r}: only local references (#/...) are supported")
            for key, value in items.items():
                if isinstance(value, dict | list):
                    stack.append((value, (*path, key)))
        elif isinstance(node, list):
            for index, value in enumerate(cast("list[Any]", node)):
                if isinstance(value, dict | list):
                    stack.append((value, (*path, index)))


_SCHEMAS = {"2.0": "v2.0", "3.0": "v3.0", "3.1": "v3.1"}


@functools.cache
def _schema_validator(version: str) -> Any:
    import jsonschema_rs

    resource = importlib.resources.files("openapi_spec_validator") / "resources" / "schemas"
    schema = json.loads((resource / _SCHEMAS[version] / "schema.json").read_text(encoding="utf-8"))
    return jsonschema_rs.validator_for(schema)


def _validate_schema(document: dict[str, Any], version: str) -> None:
    for error in _schema_validator(version).iter_errors(document):
        message = str(error.message).splitlines()[0]
        raise SpecError(pointer(list(error.instance_path)), f"invalid: {message[:300]}")


def _validate(document: dict[str, Any]) -> None:
    from jsonschema_path import SchemaPath
    from openapi_spec_validator.shortcuts import get_validator_cls
    from openapi_spec_validator.validation.exceptions import ValidatorDetectError

    try:
        validator = get_validator_cls(document)(SchemaPath.from_dict(document))
        for error in validator.iter_errors():
            where = pointer(list(cast("Any", error).path))
            message = str(cast("Any", error).message).splitlines()[0]
            raise SpecError(where, f"invalid: {message[:300]}")
    except ValidatorDetectError:
        raise SpecError("#", "no 'openapi: 3.x' or 'swagger: \"2.0\"' field") from None
    except RecursionError:
        raise SpecError("#", "a $ref cycle or nesting the validator cannot follow") from None


def load_document(
    source: str, *, max_bytes: int, max_depth: int, validate: bool | str, timeout: float = 30.0
) -> tuple[dict[str, Any], str, str]:
    """The parsed document, its version (``"2.0"``, ``"3.0"`` or ``"3.1"``) and the SHA-256 of its
    bytes; :class:`SpecError` else."""
    data = _read(source, max_bytes, timeout)
    document = _parse(data)
    if not isinstance(document, dict):
        raise SpecError("#", "expected an object at the top")
    tree = cast("dict[str, Any]", document)
    _check_tree(tree, max_depth, len(data) + 1000)
    version = _version(tree)
    if validate:
        _validate_schema(tree, version)
    if validate == "full":
        _validate(tree)
    if not isinstance(tree.get("paths"), dict):
        raise SpecError("#/paths", "expected an object of paths")
    return tree, version, hashlib.sha256(data).hexdigest()


def _version(tree: dict[str, Any]) -> str:
    if str(tree.get("swagger", "")) == "2.0":
        return "2.0"
    declared = tree.get("openapi")
    if isinstance(declared, str):
        if declared.startswith("3.0"):
            return "3.0"
        if declared.startswith(("3.1", "3.2")):
            return "3.1"
        raise SpecError("#/openapi", f"unsupported version {declared[:40]!r} (2.0, 3.0 and 3.1 are)")
    raise SpecError("#", "no 'openapi: 3.x' or 'swagger: \"2.0\"' field")


def resolve_pointer(document: dict[str, Any], ref: str) -> Any:
    """The value at the local reference ``ref`` (``#/components/schemas/Pet``); ``KeyError`` when absent."""
    from referencing import Registry, Resource
    from referencing.exceptions import Unresolvable
    from referencing.jsonschema import DRAFT202012

    resolver = _resolvers.get(id(document))
    if resolver is None or resolver[0] is not document:
        registry: Any = Registry().with_resource(
            "", Resource.from_contents(document, default_specification=DRAFT202012)
        )
        resolver = (document, registry.resolver(base_uri=""))
        _resolvers.clear()
        _resolvers[id(document)] = resolver
    try:
        return resolver[1].lookup(ref).contents
    except Unresolvable:
        raise KeyError(ref) from None


_resolvers: dict[int, tuple[Any, Any]] = {}
