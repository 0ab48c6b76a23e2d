"""An OpenAPI document's operations as MCP tools (see ``docs/openapi.md``).

Each operation (a method under a path) is one tool, or one entry of ``skipped`` with the reason:
excluded by the file's filters, or something mcplane cannot call (a request body only in a media
type it does not send). Names come from the ``operationId`` made valid under SEP-986 (characters
outside ``[A-Za-z0-9._-]`` become ``_``); an operation without one is named after its method and
path (``get_invoices_id``). A name two operations would share gets ``_2``, ``_3`` (logged).

Arguments: every parameter under its own name; when a name is used in two locations, the path
parameter keeps it and the others get their location as a suffix (``id_query``), said in their
description. A JSON or form body whose schema is a plain object is spread into arguments (its
properties) when none clashes with a parameter; otherwise it is one argument, ``body``.
Annotations follow the method (GET/HEAD/OPTIONS read-only, PUT/DELETE idempotent) unless the
file overrides them; the gateway retries only read-only and idempotent tools.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urljoin

from mcp_types import Tool, ToolAnnotations

from mcplane.openapi.config import METHODS
from mcplane.openapi.schema import SchemaConverter, is_object_schema
from mcplane.openapi.spec import SpecError, load_document, pointer

if TYPE_CHECKING:
    from mcplane.openapi.config import OpenAPIConfig, OperationFilter, OperationOverride

__all__ = ["API", "BodySpec", "Operation", "Param", "compile_api"]

logger = logging.getLogger("mcplane.openapi")

_INVALID = re.compile(r"[^A-Za-z0-9._-]+")
_JSON = re.compile(r"^application/(?:[\w.+-]+\+)?json(?:;.*)?$", re.IGNORECASE)
_FORM = "application/x-www-form-urlencoded"
_MULTIPART = "multipart/form-data"
_IGNORED_HEADERS = frozenset({"accept", "content-type", "authorization"})
MAX_NAME = 64
"""Tool names are cut to this length (plus a short hash), leaving room for a namespace under 128."""


@dataclass(frozen=True, slots=True)
class Param:
    arg: str
    """The argument's name in the tool."""
    name: str
    """The parameter's name in the API."""
    location: str
    """``path``, ``query``, ``header`` or ``cookie``."""
    style: str
    explode: bool


@dataclass(frozen=True, slots=True)
class BodySpec:
    media: str
    """``json``, ``form`` or ``multipart``."""
    content_type: str
    spread: dict[str, str] | None
    """Argument -> property, when the body's properties are arguments; ``None``: one ``body`` argument."""
    arg: str = "body"
    required: bool = False
    """The operation requires a body: a spread one is sent (``{}``) even when no argument fills it."""


@dataclass(slots=True)
class Operation:
    name: str
    method: str
    path: str
    operation_id: str | None
    tags: list[str]
    params: list[Param]
    body: BodySpec | None
    fixed: dict[str, Any]
    tool: Tool
    wrap: bool | None
    """Whether the answer goes into ``structuredContent`` as ``{"result": ...}`` (``None``: when not an object)."""


@dataclass(slots=True)
class API:
    version: str
    title: str
    base_urls: list[str]
    digest: str = ""
    """SHA-256 of the document's bytes."""
    operations: dict[str, Operation] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """``("GET /path", reason)`` of each operation that is not a tool."""

    @property
    def total(self) -> int:
        return len(self.operations) + len(self.skipped)


def compile_api(config: OpenAPIConfig) -> API:
    """Load ``config.spec`` and build the tools; :class:`~mcplane.openapi.spec.SpecError` on bad input."""
    document, version, digest = load_document(
        config.spec,
        max_bytes=config.max_spec_bytes,
        max_depth=config.max_depth,
        validate=config.validate_spec,
        timeout=config.fetch_timeout,
    )
    info: Any = document.get("info")
    title = str(info.get("title", "")) if isinstance(info, dict) else ""
    api = API(version=version, title=title, base_urls=_base_urls(config, document, version), digest=digest)
    builder = _Builder(config, document, version)
    used = set(config.operations)
    for path, item in cast("dict[str, Any]", document["paths"]).items():
        where_item: tuple[Any, ...] = ("paths", path)
        if not isinstance(item, dict):
            raise SpecError(pointer(where_item), "expected a path item object")
        path_item, where_item = builder.schemas.deref(item, where_item)
        for method in METHODS:
            operation = cast("dict[str, Any]", path_item).get(method)
            if operation is None:
                continue
            label = f"{method.upper()} {path}"
            where = (*where_item, method)
            if not isinstance(operation, dict):
                raise SpecError(pointer(where), "expected an operation object")
            op = cast("dict[str, Any]", operation)
            op_id = op.get("operationId")
            override = config.operations.get(op_id) if isinstance(op_id, str) else None
            override = override or config.operations.get(label)
            used.discard(op_id) if isinstance(op_id, str) else None
            used.discard(label)
            reason = builder.excluded(method, path, op, override)
            if reason is not None:
                api.skipped.append((label, reason))
                continue
            try:
                built = builder.operation(method, path, cast("dict[str, Any]", path_item), op, where, override)
            except _Skip as skip:
                api.skipped.append((label, str(skip)))
                continue
            if built.name in api.operations:
                base, n = built.name, 2
                while f"{base}_{n}" in api.operations:
                    n += 1
                logger.warning("openapi %s: tool name %r is taken; %s is %s_%d", config.spec, base, label, base, n)
                built.name = f"{base}_{n}"
                built.tool = built.tool.model_copy(update={"name": built.name})
            api.operations[built.name] = built
    if used:
        raise SpecError("#/paths", f"operations: {sorted(used)[0]!r} names no operation of the document")
    return api


class _Skip(Exception):
    """An operation mcplane cannot offer as a tool (the message says why)."""


class _Builder:
    def __init__(self, config: OpenAPIConfig, document: dict[str, Any], version: str) -> None:
        self.config = config
        self.document = document
        self.version = version
        self.schemas = SchemaConverter(document, version, config.max_depth)

    # ----------------------------------------------------------------- filters
    def excluded(self, method: str, path: str, op: dict[str, Any], override: OperationOverride | None) -> str | None:
        if override is not None and override.exclude:
            return "excluded by operations"
        config = self.config
        if not config.include.empty and not _matches(config.include, method, path, op):
            return "not included"
        if not config.exclude.empty and _matches(config.exclude, method, path, op, any_of=True):
            return "excluded"
        return None

    # ----------------------------------------------------------------- one operation
    def operation(
        self,
        method: str,
        path: str,
        item: dict[str, Any],
        op: dict[str, Any],
        where: tuple[Any, ...],
        override: OperationOverride | None,
    ) -> Operation:
        op_id = op.get("operationId") if isinstance(op.get("operationId"), str) else None
        name = _tool_name(override.name if override is not None and override.name else op_id or _fallback(method, path))
        properties: dict[str, Any] = {}
        required: list[str] = []
        uses: set[str] = set()
        raw_params = self._parameters(item, op, where)
        params: list[Param] = []
        by_name: dict[str, list[tuple[dict[str, Any], tuple[Any, ...]]]] = {}
        form_params: list[tuple[dict[str, Any], tuple[Any, ...]]] = []
        body_param: tuple[dict[str, Any], tuple[Any, ...]] | None = None
        for param, pwhere in raw_params:
            location = param.get("in")
            if location == "body":
                body_param = (param, pwhere)
                continue
            if location == "formData":
                form_params.append((param, pwhere))
                continue
            if location == "header" and str(param.get("name", "")).lower() in _IGNORED_HEADERS:
                continue
            by_name.setdefault(str(param.get("name")), []).append((param, pwhere))
        for pname, entries in by_name.items():
            entries.sort(key=lambda e: 0 if e[0].get("in") == "path" else 1)
            for index, (param, pwhere) in enumerate(entries):
                location = str(param.get("in"))
                arg = _arg_name(pname) if index == 0 else _arg_name(f"{pname}_{location}")
                schema = self._param_schema(param, pwhere, uses)
                if index:
                    note = f"(the {location} parameter {pname!r})"
                    schema = {**schema, "description": f"{schema.get('description', '')} {note}".strip()}
                properties[arg] = schema
                if param.get("required") or location == "path":
                    required.append(arg)
                style = str(param.get("style") or ("simple" if location in ("path", "header") else "form"))
                explode = param.get("explode")
                if explode is None:
                    explode = style == "form" and param.get("collectionFormat", "multi") == "multi"
                    if self.version == "2.0":
                        explode = param.get("collectionFormat") == "multi"
                params.append(Param(arg, pname, location, style, bool(explode)))
        declared = {p.name for p in params if p.location == "path"}
        missing = [v for v in re.findall(r"{([^}]+)}", path) if v not in declared]
        if missing:
            raise _Skip(f"path parameter {missing[0]!r} is not declared")
        body = self._body(op, where, body_param, form_params, properties, required, uses)
        fixed = dict(override.fixed) if override is not None else {}
        for arg in fixed:
            if arg not in properties:
                raise SpecError(pointer(where), f"operations: fixed argument {arg!r} is not an argument of {name}")
            properties.pop(arg)
            if arg in required:
                required.remove(arg)
        input_schema: dict[str, Any] = {"type": "object", "properties": properties}
        if required:
            input_schema["required"] = required
        input_schema["additionalProperties"] = False
        if uses:
            input_schema["$defs"] = self.schemas.closure(uses)
        output, wrap = self._output(op, where) if self.config.output_schema else (None, None)
        annotations = _annotations(method, op, override)
        tool = Tool(
            name=name,
            title=annotations.title,
            description=self._description(op, override),
            input_schema=input_schema,
            output_schema=output,
            annotations=annotations,
        )
        tags = [str(t) for t in cast("list[Any]", op.get("tags") or [])]
        return Operation(name, method, path, op_id, tags, params, body, fixed, tool, wrap)

    def _parameters(
        self, item: dict[str, Any], op: dict[str, Any], where: tuple[Any, ...]
    ) -> list[tuple[dict[str, Any], tuple[Any, ...]]]:
        merged: dict[tuple[str, str], tuple[dict[str, Any], tuple[Any, ...]]] = {}
        for source, base in (
            (item.get("parameters"), (*where[:-1], "parameters")),
            (op.get("parameters"), (*where, "parameters")),
        ):
            for index, raw in enumerate(cast("list[Any]", source or [])):
                param, pwhere = self.schemas.deref(raw, (*base, index))
                if not isinstance(param, dict) or "name" not in param or "in" not in param:
                    raise SpecError(pointer(pwhere), "expected a parameter with name and in")
                p = cast("dict[str, Any]", param)
                merged[(str(p["name"]), str(p["in"]))] = (p, pwhere)  # the operation's replaces the path's
        return list(merged.values())

    def _param_schema(self, param: dict[str, Any], where: tuple[Any, ...], uses: set[str]) -> dict[str, Any]:
        schema: Any = param.get("schema")
        swhere = (*where, "schema")
        if schema is None and isinstance(content := param.get("content"), dict):
            media = next(iter(cast("dict[str, Any]", content).items()), None)
            if media is not None and isinstance(media[1], dict):
                schema = cast("dict[str, Any]", media[1]).get("schema")
                swhere = (*where, "content", media[0], "schema")
        if schema is None and self.version == "2.0":  # 2.0: the schema keywords are on the parameter
            keep = ("type", "format", "items", "enum", "default", "minimum", "maximum", "pattern")
            keep += ("minLength", "maxLength", "minItems", "maxItems", "exclusiveMinimum", "exclusiveMaximum")
            schema = {k: v for k, v in param.items() if k in (*keep, "x-nullable")}
            swhere = where
        converted, used = self.schemas.convert(schema if schema is not None else {}, swhere)
        uses |= used
        out = dict(converted) if isinstance(converted, dict) else {}
        if isinstance(param.get("description"), str) and "description" not in out:
            out["description"] = _trim(param["description"], self.config.max_description)
        if param.get("deprecated"):
            out["deprecated"] = True
        return out

    def _body(
        self,
        op: dict[str, Any],
        where: tuple[Any, ...],
        body_param: tuple[dict[str, Any], tuple[Any, ...]] | None,
        form_params: list[tuple[dict[str, Any], tuple[Any, ...]]],
        properties: dict[str, Any],
        required: list[str],
        uses: set[str],
    ) -> BodySpec | None:
        schema: Any = None
        swhere: tuple[Any, ...] = where
        body_required = False
        media = content_type = ""
        if self.version == "2.0":
            consumes = cast("list[str]", op.get("consumes") or self.document.get("consumes") or ["application/json"])
            if body_param is not None:
                schema, swhere = body_param[0].get("schema", {}), (*body_param[1], "schema")
                body_required = bool(body_param[0].get("required"))
                media, content_type = "json", next((c for c in consumes if _JSON.match(c)), "application/json")
            elif form_params:
                multipart = _MULTIPART in consumes and _FORM not in consumes
                media = "multipart" if multipart else "form"
                content_type = _MULTIPART if multipart else _FORM
                props: dict[str, Any] = {}
                req: list[str] = []
                for param, pwhere in form_params:
                    if param.get("type") == "file":
                        raise _Skip("a file upload (formData type: file) is not supported")
                    props[str(param["name"])] = self._param_schema(param, pwhere, uses)
                    if param.get("required"):
                        req.append(str(param["name"]))
                return self._spread(
                    media,
                    content_type,
                    {"type": "object", "properties": props, "required": req},
                    True,
                    properties,
                    required,
                    converted=True,
                )
            else:
                return None
        else:
            raw = op.get("requestBody")
            if raw is None:
                return None
            body, bwhere = self.schemas.deref(raw, (*where, "requestBody"))
            if not isinstance(body, dict):
                raise SpecError(pointer(bwhere), "expected a request body object")
            b = cast("dict[str, Any]", body)
            body_required = bool(b.get("required"))
            content = cast("dict[str, Any]", b.get("content") or {})
            chosen = next((c for c in content if _JSON.match(c)), None)
            media = "json"
            if chosen is None:
                chosen = next((c for c in content if c.split(";")[0].strip().lower() == _FORM), None)
                media = "form"
            if chosen is None:
                chosen = next((c for c in content if c.split(";")[0].strip().lower() == _MULTIPART), None)
                media = "multipart"
            if chosen is None:
                if not content:
                    return None
                kinds = ", ".join(sorted(content))[:200]
                if not body_required:
                    return None  # optional: the operation can be called without it
                raise _Skip(f"request body only as {kinds} (JSON and form bodies are supported)")
            content_type = chosen.split(";")[0].strip()
            mt: Any = content[chosen]
            schema = cast("dict[str, Any]", mt).get("schema", {}) if isinstance(mt, dict) else {}
            swhere = (*bwhere, "content", chosen, "schema")
        return self._spread(media, content_type, schema, body_required, properties, required, swhere=swhere, uses=uses)

    def _spread(
        self,
        media: str,
        content_type: str,
        schema: Any,
        body_required: bool,
        properties: dict[str, Any],
        required: list[str],
        *,
        converted: bool = False,
        swhere: tuple[Any, ...] = (),
        uses: set[str] | None = None,
    ) -> BodySpec:
        if not converted:
            target, twhere = self.schemas.deref(schema, swhere)
            target_props = cast("dict[str, Any]", target).get("properties") if isinstance(target, dict) else None
            plain = (
                isinstance(target, dict)
                and isinstance(target_props, dict)
                and cast("dict[str, Any]", target).get("type", "object") == "object"
                and not any(k in cast("dict[str, Any]", target) for k in ("allOf", "oneOf", "anyOf", "not"))
            )
            if plain:
                names = list(cast("dict[str, Any]", target_props))
                if not any(_arg_name(n) in properties or _arg_name(n) != n for n in names):
                    t = cast("dict[str, Any]", target)
                    spread: dict[str, str] = {}
                    for prop in names:
                        value, used = self.schemas.convert(t["properties"][prop], (*twhere, "properties", prop))
                        assert uses is not None
                        uses |= used
                        properties[prop] = value
                        spread[prop] = prop
                    if body_required or media != "json":
                        required.extend(str(r) for r in cast("list[Any]", t.get("required") or []) if r in spread)
                    return BodySpec(media, content_type, spread, required=body_required)
            value, used = self.schemas.convert(schema, swhere)
            assert uses is not None
            uses |= used
        else:
            value = schema
            props = cast("dict[str, Any]", schema["properties"])
            if not any(n in properties or _arg_name(n) != n for n in props):
                properties.update(props)
                required.extend(cast("list[str]", schema.get("required") or []))
                return BodySpec(media, content_type, {n: n for n in props}, required=body_required)
        arg = "body"
        if arg in properties:  # a parameter named body: it keeps the name, the body is body_
            arg = "body_"
        properties[arg] = value
        if body_required:
            required.append(arg)
        return BodySpec(media, content_type, None, arg, required=body_required)

    def _output(self, op: dict[str, Any], where: tuple[Any, ...]) -> tuple[dict[str, Any] | None, bool | None]:
        responses = {str(c): v for c, v in cast("dict[Any, Any]", op.get("responses") or {}).items()}
        codes = sorted((c for c in responses if c.startswith("2")), key=lambda c: c.replace("X", "9"))
        for code in codes:
            response, rwhere = self.schemas.deref(responses[code], (*where, "responses", code))
            if not isinstance(response, dict):
                continue
            r = cast("dict[str, Any]", response)
            schema: Any = None
            swhere: tuple[Any, ...] = rwhere
            if self.version == "2.0":
                schema, swhere = r.get("schema"), (*rwhere, "schema")
            else:
                content = cast("dict[str, Any]", r.get("content") or {})
                chosen = next((c for c in content if _JSON.match(c)), None)
                if chosen is not None and isinstance(content[chosen], dict):
                    schema = cast("dict[str, Any]", content[chosen]).get("schema")
                    swhere = (*rwhere, "content", chosen, "schema")
            if schema is None:
                return None, None
            converted, used = self.schemas.convert(schema, swhere)
            defs = self.schemas.closure(used)
            out: dict[str, Any]
            if is_object_schema(converted, defs):
                out = dict(cast("dict[str, Any]", converted))
                if "$ref" in out:
                    out = {"allOf": [out]}  # a root $ref beside $defs: kept apart for older validators
                out["type"] = "object"
                wrap = False
            else:
                out = {"type": "object", "properties": {"result": converted}, "required": ["result"]}
                wrap = True
            if defs:
                out["$defs"] = defs
            return out, wrap
        return None, None

    def _description(self, op: dict[str, Any], override: OperationOverride | None) -> str | None:
        if override is not None and override.description is not None:
            return override.description
        parts = [str(op[k]).strip() for k in ("summary", "description") if isinstance(op.get(k), str) and op[k].strip()]
        if len(parts) == 2 and parts[1].startswith(parts[0]):
            parts = parts[1:]
        return _trim("\n\n".join(parts), self.config.max_description) if parts else None


def _matches(rule: OperationFilter, method: str, path: str, op: dict[str, Any], *, any_of: bool = False) -> bool:
    checks: list[bool] = []
    if rule.tags:
        tags = [str(t) for t in cast("list[Any]", op.get("tags") or [])]
        checks.append(any(t in rule.tags for t in tags))
    if rule.paths:
        checks.append(any(fnmatch.fnmatchcase(path, g) for g in rule.paths))
    if rule.operations:
        op_id = str(op.get("operationId") or _tool_name(_fallback(method, path)))
        checks.append(any(fnmatch.fnmatchcase(op_id, g) for g in rule.operations))
    if rule.methods:
        checks.append(method in rule.methods)
    return any(checks) if any_of else all(checks)


def _annotations(method: str, op: dict[str, Any], override: OperationOverride | None) -> ToolAnnotations:
    read_only = method in ("get", "head", "options")
    values: dict[str, Any] = {
        "title": str(op["summary"]).strip()[:200] if isinstance(op.get("summary"), str) else None,
        "read_only_hint": read_only,
        "idempotent_hint": read_only or method in ("put", "delete"),
        "destructive_hint": method == "delete" if not read_only else False,
        "open_world_hint": True,
    }
    if override is not None:
        names = {
            "readOnlyHint": "read_only_hint",
            "idempotentHint": "idempotent_hint",
            "destructiveHint": "destructive_hint",
            "openWorldHint": "open_world_hint",
            "title": "title",
        }
        for key, value in override.annotations.items():
            if key not in names:
                raise SpecError("#", f"operations: unknown annotation {key!r} (one of {', '.join(names)})")
            values[names[key]] = value
    return ToolAnnotations(**values)


def _tool_name(raw: str) -> str:
    name = _INVALID.sub("_", raw).strip("_") or "operation"
    if len(name) > MAX_NAME:
        digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
        name = f"{name[: MAX_NAME - 9]}_{digest}"
    return name


def _fallback(method: str, path: str) -> str:
    """The name of an operation without an ``operationId``: ``GET /things/{id}`` is ``get_things_id``."""
    return re.sub(r"[^A-Za-z0-9]+", "_", f"{method}_{path}").strip("_")


def _arg_name(raw: str) -> str:
    return _INVALID.sub("_", raw)[:64] or "_"


def _trim(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _base_urls(config: OpenAPIConfig, document: dict[str, Any], version: str) -> list[str]:
    if config.base_urls:
        return list(config.base_urls)
    if config.base_url is not None:
        return [config.base_url]
    url: str | None = None
    if version == "2.0":
        host = document.get("host")
        if isinstance(host, str):
            schemes = cast("list[str]", document.get("schemes") or ["https"])
            url = f"{schemes[0]}://{host}{document.get('basePath', '')}"
        elif isinstance(document.get("basePath"), str):
            url = str(document["basePath"])
    else:
        servers = document.get("servers")
        if isinstance(servers, list) and servers and isinstance(servers[0], dict):
            server = cast("dict[str, Any]", servers[0])
            url = str(server.get("url", ""))
            for var, spec in cast("dict[str, Any]", server.get("variables") or {}).items():
                if isinstance(spec, dict):
                    url = url.replace("{" + var + "}", str(cast("dict[str, Any]", spec).get("default", "")))
    if url and not url.startswith(("http://", "https://")) and config.spec.startswith(("http://", "https://")):
        url = urljoin(config.spec, url)
    if not url or not url.startswith(("http://", "https://")):
        raise SpecError("#/servers", "no absolute server URL in the document: set base_url")
    return [url]
