"""OpenAPI schemas as JSON Schema 2020-12, as MCP tool schemas need them.

Each referenced schema becomes one entry of ``$defs`` (converted once per document, shared by
every tool that needs it) and its ``$ref`` points there; a tool carries only the definitions it
reaches. A recursive schema is therefore a ``$ref`` back into ``$defs``, never an endless
expansion; a reference that only leads to itself (``A -> B -> A`` with nothing in between) has
no meaning and is refused. OpenAPI 3.0 and Swagger 2.0 dialect is translated: ``nullable``
(and ``x-nullable``) adds ``null``, boolean ``exclusiveMinimum``/``exclusiveMaximum`` become
numbers, ``example`` becomes ``examples``, 2.0's ``type: file`` a binary string; keywords with
no JSON Schema meaning (``discriminator``, ``xml``, ``externalDocs``, ``x-*``) are dropped.
"""

from __future__ import annotations

import re
from typing import Any, cast

from mcplane.openapi.spec import SpecError, pointer, resolve_pointer

__all__ = ["SchemaConverter"]

_DROP = frozenset(
    {"discriminator", "xml", "externalDocs", "nullable", "example", "$id", "$schema", "$anchor", "$dynamicAnchor"}
)
_SCHEMA_MAPS = ("properties", "patternProperties", "dependentSchemas", "$defs", "definitions")
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SCHEMA_ONE = (
    "additionalProperties",
    "items",
    "not",
    "if",
    "then",
    "else",
    "contains",
    "propertyNames",
    "unevaluatedProperties",
    "unevaluatedItems",
    "additionalItems",
)
_NAME = re.compile(r"[^A-Za-z0-9._-]")


class SchemaConverter:
    """Converts the schemas of one document; ``defs`` grows as references are met."""

    def __init__(self, document: dict[str, Any], version: str, max_depth: int) -> None:
        self.document = document
        self.version = version
        self.max_depth = max_depth
        self.defs: dict[str, Any] = {}
        self.deps: dict[str, set[str]] = {}
        self._names: dict[str, str] = {}
        self._taken: set[str] = set()

    # ----------------------------------------------------------------- public
    def convert(self, schema: Any, where: tuple[Any, ...]) -> tuple[Any, set[str]]:
        """``schema`` (found at ``where``) in JSON Schema 2020-12, and the ``$defs`` names it uses directly."""
        used: set[str] = set()
        return self._convert(schema, where, 0, used), used

    def closure(self, names: set[str]) -> dict[str, Any]:
        """The definitions ``names`` reach (themselves included), sorted by name."""
        seen: set[str] = set()
        pending = list(names)
        while pending:
            name = pending.pop()
            if name in seen:
                continue
            seen.add(name)
            pending.extend(self.deps.get(name, ()))
        return {name: self.defs[name] for name in sorted(seen)}

    def deref(self, node: Any, where: tuple[Any, ...]) -> tuple[Any, tuple[Any, ...]]:
        """Follow ``$ref`` (of a parameter, body, response or schema) to its target; a cycle is a SpecError."""
        seen: list[str] = []
        while isinstance(node, dict) and isinstance(ref := cast("dict[str, Any]", node).get("$ref"), str):
            if ref in seen:
                raise SpecError(pointer(where), f"$ref cycle: {' -> '.join([*seen, ref])}")
            seen.append(ref)
            if len(seen) > self.max_depth:
                raise SpecError(pointer(where), "$ref chain longer than max_depth")
            try:
                node = resolve_pointer(self.document, ref)
            except KeyError:
                raise SpecError(pointer(where), f"$ref {ref!r} points nowhere") from None
            where = _ref_path(ref)
        return node, where

    # ----------------------------------------------------------------- conversion
    def _convert(self, schema: Any, where: tuple[Any, ...], depth: int, used: set[str]) -> Any:
        if depth > self.max_depth:
            raise SpecError(pointer(where), f"schema nested deeper than max_depth ({self.max_depth})")
        if isinstance(schema, bool):
            return schema
        if not isinstance(schema, dict):
            raise SpecError(pointer(where), "expected a schema object")
        node = cast("dict[str, Any]", schema)
        ref = node.get("$ref")
        if isinstance(ref, str):
            name = self._define(ref, where)
            used.add(name)
            target: dict[str, Any] = {"$ref": f"#/$defs/{name}"}
            if self.version == "3.1":  # 3.1 (JSON Schema) keeps keywords beside $ref; 3.0 and 2.0 ignore them
                rest = {k: v for k, v in node.items() if k != "$ref"}
                if rest:
                    return {**self._convert(rest, where, depth, used), **target}
            return target
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in _DROP or key.startswith("x-") or key == "$dynamicRef":
                continue
            if key in _SCHEMA_MAPS and isinstance(value, dict):
                key_out = "$defs" if key == "definitions" else key
                out[key_out] = {
                    k: self._convert(v, (*where, key, k), depth + 1, used)
                    for k, v in cast("dict[str, Any]", value).items()
                }
            elif key in _SCHEMA_LISTS and isinstance(value, list):
                out[key] = [
                    self._convert(v, (*where, key, i), depth + 1, used) for i, v in enumerate(cast("list[Any]", value))
                ]
            elif key in _SCHEMA_ONE and isinstance(value, dict | bool):
                if key == "items" and isinstance(value, bool) and self.version != "3.1":
                    continue
                out[key] = self._convert(value, (*where, key), depth + 1, used)
            elif key == "items" and isinstance(value, list):  # draft-4 tuple form
                out["prefixItems"] = [
                    self._convert(v, (*where, key, i), depth + 1, used) for i, v in enumerate(cast("list[Any]", value))
                ]
            elif key in ("exclusiveMinimum", "exclusiveMaximum") and isinstance(value, bool):
                bound = node.get("minimum" if key == "exclusiveMinimum" else "maximum")
                if value and isinstance(bound, int | float):
                    out[key] = bound
            elif key == "type" and value == "file":
                out["type"], out["format"] = "string", "binary"
            else:
                out[key] = value
        for key in ("exclusiveMinimum", "exclusiveMaximum"):
            if isinstance(out.get(key), int | float) and isinstance(node.get(key), bool):
                out.pop("minimum" if key == "exclusiveMinimum" else "maximum", None)
        if "example" in node and "examples" not in node:
            out["examples"] = [node["example"]]
        if self.version != "3.1" and (node.get("nullable") is True or node.get("x-nullable") is True):
            out = _nullable(out)
        return out

    def _define(self, ref: str, where: tuple[Any, ...]) -> str:
        name = self._names.get(ref)
        if name is not None:
            return name
        if not ref.startswith("#"):
            raise SpecError(pointer(where), f"$ref {ref!r}: only local references are supported")
        name = self._name_for(ref)
        self._names[ref] = name
        try:
            target = resolve_pointer(self.document, ref)
        except KeyError:
            raise SpecError(pointer(where), f"$ref {ref!r} points nowhere") from None
        self.defs[name] = True  # placeholder while converting (a recursive reference lands here)
        used: set[str] = set()
        self.defs[name] = self._convert(target, _ref_path(ref), 0, used)
        self.deps[name] = used
        self._check_cycle(name, where)
        return name

    def _check_cycle(self, name: str, where: tuple[Any, ...]) -> None:
        """A definition that is only a ``$ref`` chain back to itself (nothing to validate against)."""
        chain = [name]
        current = self.defs[name]
        while isinstance(current, dict) and set(cast("dict[str, Any]", current)) == {"$ref"}:
            nxt = str(cast("dict[str, Any]", current)["$ref"]).removeprefix("#/$defs/")
            if nxt in chain:
                refs = [next(r for r, n in self._names.items() if n == c) for c in [*chain, nxt]]
                raise SpecError(pointer(where), f"$ref cycle: {' -> '.join(refs)}")
            chain.append(nxt)
            current = self.defs.get(nxt)

    def _name_for(self, ref: str) -> str:
        parts = _ref_path(ref)
        if len(parts) >= 3 and parts[0] == "components" and parts[1] == "schemas":
            base = "/".join(str(p) for p in parts[2:])
        elif len(parts) >= 2 and parts[0] == "definitions":
            base = "/".join(str(p) for p in parts[1:])
        else:
            base = "_".join(str(p) for p in parts) or "root"
        base = _NAME.sub("_", base)[:100] or "schema"
        name, n = base, 1
        while name in self._taken:
            n += 1
            name = f"{base}_{n}"
        self._taken.add(name)
        return name


def _ref_path(ref: str) -> tuple[Any, ...]:
    from urllib.parse import unquote

    body = unquote(ref.removeprefix("#").removeprefix("/"))
    if not body:
        return ()
    return tuple(p.replace("~1", "/").replace("~0", "~") for p in body.split("/"))


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    kind = schema.get("type")
    if isinstance(kind, str):
        out = {**schema, "type": [kind, "null"]}
        if isinstance(enum := schema.get("enum"), list) and None not in enum:
            out["enum"] = [*cast("list[Any]", enum), None]
        return out
    if isinstance(kind, list):
        kinds = cast("list[Any]", kind)
        return schema if "null" in kinds else {**schema, "type": [*kinds, "null"]}
    return {"anyOf": [schema, {"type": "null"}]}


def is_object_schema(schema: Any, defs: dict[str, Any]) -> bool:
    """Whether ``schema`` (following ``$ref`` into ``defs``) always describes a JSON object."""
    for _ in range(32):
        if not isinstance(schema, dict):
            return False
        node = cast("dict[str, Any]", schema)
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            schema = defs.get(ref.removeprefix("#/$defs/"))
            continue
        if node.get("type") == "object":
            return True
        parts = node.get("allOf")
        return isinstance(parts, list) and any(is_object_schema(p, defs) for p in cast("list[Any]", parts))
    return False
