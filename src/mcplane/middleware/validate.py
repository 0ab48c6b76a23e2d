"""The ``validate`` slot: every tool call's arguments are bounded, then checked against a schema.

**Bounds first.** Before any schema runs, the arguments are walked once (iteratively, stopping at
the limit): more than ``max_argument_nodes`` values or nesting deeper than ``max_argument_depth``
answers ``invalid_arguments`` at once. So no request, however shaped (within the body cap), can
make validation or the error answer cost more than a bounded amount of work.

**Schemas.** Tools whose JSON Schema is all there is (gateway upstreams, local tools registered
with a hand-written ``input_schema``) are checked here with ``jsonschema-rs`` (Draft 2020-12,
formats asserted). It is compiled Rust: a 100,000-element array validates in milliseconds instead
of the better part of a second in pure Python, so validation never holds the event loop for long.
Its ``pattern`` keyword runs on a backtracking-bounded regex engine (``fancy-regex`` with a
backtrack limit; plain patterns run on Rust's linear-time ``regex``), so a pattern from an
upstream such as ``^(a+)+$`` cannot stall the process (Python's ``re`` takes time exponential in
the input there).

Local tools with typed parameters are validated by their pydantic model (the SDK does it as the
function is called). For large arguments (more than ``PREVALIDATE_NODES`` values) this slot runs
that model first, so a failure is answered from a bounded sample instead of the SDK's message,
which renders every one of possibly hundreds of thousands of problems.

**Bounded answers.** At most ``max_error_details`` problems are listed, each with the JSON path of
the field and what was wrong, never the offending value; when there are more, a last entry says
how many (``"type": "truncated"``). A tool result larger than ``max_result_bytes`` (its text,
blobs and structured content, as sent) is not sent: the caller gets ``internal_error`` (a local
tool) or ``upstream_error`` (a gateway upstream), not retryable, and the server logs which tool.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema_rs
import orjson
import pydantic_core
from mcp_types import CallToolResult
from pydantic import ValidationError

from mcplane.errors import ConfigError, InternalError, InvalidArguments, UpstreamError
from mcplane.pipeline import Call, CallNext

__all__ = [
    "ArgumentLimits",
    "ValidateMiddleware",
    "bounded_details",
    "check_shape",
    "pydantic_details",
    "result_size",
]

logger = logging.getLogger("mcplane.validate")

MAX_DETAILS = 20
PREVALIDATE_NODES = 1_000
"""Local tools whose arguments hold more values than this are validated here first."""
BACKTRACK_LIMIT = 100_000
"""Steps a backtracking pattern (lookaround, backreference) may take before it counts as no match."""
_PRUNE_KEYS = 1_000
"""Keys kept per object when a failing input is cut down to find the first problems."""


@dataclass(frozen=True, slots=True)
class ArgumentLimits:
    max_nodes: int = 100_000
    """Values (objects, arrays and scalars, counted alike) a call's arguments may hold."""
    max_depth: int = 64
    """How deeply objects and arrays may nest in a call's arguments."""
    max_details: int = MAX_DETAILS
    """Problems listed in an ``invalid_arguments`` answer."""
    max_result_bytes: int = 16 * 1024 * 1024
    """Largest tool result sent (text, blobs and structured content)."""


def _too(kind: str, message: str) -> InvalidArguments:
    return InvalidArguments(
        f"the arguments {message}", details=[{"field": "(arguments)", "message": message, "type": kind}]
    )


def check_shape(arguments: Mapping[str, Any], limits: ArgumentLimits) -> int:
    """Count the values in ``arguments`` (stopping at the limits); raise when it is over them."""
    count = 0
    stack: list[tuple[Any, int]] = [(value, 1) for value in arguments.values()]
    while stack:
        value, depth = stack.pop()
        count += 1
        if count > limits.max_nodes:
            raise _too("too_large", f"hold more than {limits.max_nodes} values")
        if isinstance(value, dict | list):
            if depth >= limits.max_depth:
                raise _too("too_deep", f"nest deeper than {limits.max_depth} levels")
            children = value.values() if isinstance(value, dict) else value  # pyright: ignore[reportUnknownVariableType, reportUnknownMemberType]
            stack.extend((child, depth + 1) for child in children)  # pyright: ignore[reportUnknownVariableType]
    return count


def bounded_details(details: list[dict[str, Any]], total: int | None, limit: int) -> list[dict[str, Any]]:
    """The first ``limit`` details, then one entry saying how many more there are (``None``: unknown)."""
    shown = details[:limit]
    more = (total - len(shown)) if total is not None else (len(details) - len(shown))
    if total is None and len(details) > limit:
        shown.append({"field": "(more)", "message": "more problems not listed", "type": "truncated"})
    elif more > 0:
        shown.append({"field": "(more)", "message": f"{more} more problems not listed", "type": "truncated"})
    return shown


def _pruned(value: Any, keep: int) -> Any:
    """A copy of ``value`` with every array cut to ``keep`` items (and huge objects to their first keys).

    Validating it finds the first problems of the whole at a bounded cost.
    """
    if isinstance(value, list):
        return [_pruned(item, keep) for item in value[:keep]]  # pyright: ignore[reportUnknownVariableType]
    if isinstance(value, dict):
        items = list(value.items())[:_PRUNE_KEYS]  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType, reportUnknownArgumentType]
        return {key: _pruned(item, keep) for key, item in items}  # pyright: ignore[reportUnknownVariableType]
    return value


def _field(path: Any) -> str:
    return ".".join(str(part) for part in path) or "(arguments)"


def pydantic_details(
    exc: ValidationError, limit: int, sample: Callable[[], ValidationError | None] | None = None
) -> list[dict[str, Any]]:
    """At most ``limit`` details of a pydantic failure (plus a count of the rest).

    ``exc.errors()`` renders every problem; with many, the details come from ``sample()`` (the
    same model on a cut-down input) instead.
    """
    total = exc.error_count()
    source = exc
    if total > limit and sample is not None:
        source = sample() or exc
    if source is exc and total > 50 * limit:  # rendering them all would cost more than the call
        return bounded_details([], total, 0)
    errors = source.errors(include_url=False, include_input=False, include_context=False)
    details = [{"field": _field(err["loc"]), "message": err["msg"], "type": err["type"]} for err in errors[:limit]]
    return bounded_details(details, max(total, len(details)), limit)


class ValidateMiddleware:
    """Bounds every tool call's arguments, then checks them against the tool's schema."""

    def __init__(
        self,
        limits: ArgumentLimits | None = None,
        local_validator: Callable[[str], Callable[[dict[str, Any]], Any] | None] | None = None,
    ) -> None:
        self.limits = limits or ArgumentLimits()
        self._local_validator = local_validator
        """How a local tool's arguments are validated, as the SDK does it (``None``: not a local tool)."""
        self._validators: dict[int, tuple[Mapping[str, Any], jsonschema_rs.Validator]] = {}

    def _validator(self, schema: Mapping[str, Any]) -> jsonschema_rs.Validator:
        cached = self._validators.get(id(schema))
        if cached is not None and cached[0] is schema:
            return cached[1]
        try:
            jsonschema_rs.meta.validate(dict(schema))
            validator = jsonschema_rs.validator_for(
                dict(schema),
                validate_formats=True,
                pattern_options=jsonschema_rs.FancyRegexOptions(backtrack_limit=BACKTRACK_LIMIT),
            )
        except (jsonschema_rs.ValidationError, ValueError) as exc:
            raise ConfigError(f"invalid input schema: {_schema_problem(exc)}") from None
        self._validators[id(schema)] = (schema, validator)
        return validator

    async def __call__(self, call: Call, call_next: CallNext) -> Any:
        if call.kind != "tool":
            return await call_next(call)
        nodes = check_shape(call.arguments, self.limits)
        schema = call.source.json_schema
        if isinstance(schema, Mapping):
            self._check_schema(schema, dict(call.arguments))  # pyright: ignore[reportUnknownArgumentType]
        elif nodes > PREVALIDATE_NODES and self._local_validator is not None:
            self._check_model(call.name, dict(call.arguments))
        result = await call_next(call)
        if isinstance(result, CallToolResult) and result_size(result, self.limits.max_result_bytes) > (
            self.limits.max_result_bytes
        ):
            limit = self.limits.max_result_bytes
            logger.warning("tool %r answered more than %d bytes; the result was not sent", call.name, limit)
            kind = UpstreamError if call.source.upstream is not None else InternalError
            raise kind(f"the tool's result is larger than the {limit}-byte limit", details={"limit_bytes": limit})
        return result

    def _check_schema(self, schema: Mapping[str, Any], arguments: dict[str, Any]) -> None:
        validator = self._validator(schema)
        if validator.is_valid(arguments):
            return
        limit = self.limits.max_details
        errors = list(validator.iter_errors(_pruned(arguments, limit)))
        errors.sort(key=lambda e: [str(part) for part in e.instance_path])
        details = [
            {
                "field": _field(error.instance_path),
                "message": _safe_message(error.schema_path, schema),
                "type": _keyword(error.schema_path),
            }
            for error in errors[: limit + 1]
        ]
        if not details:  # the problem lies beyond the sample
            details = [{"field": "(arguments)", "message": "does not satisfy the input schema", "type": "schema"}]
        raise InvalidArguments(
            "the arguments do not match the tool's input schema", details=bounded_details(details, None, limit)
        )

    def _check_model(self, name: str, arguments: dict[str, Any]) -> None:
        assert self._local_validator is not None
        validate = self._local_validator(name)
        if validate is None:
            return
        try:
            validate(arguments)
        except ValidationError as exc:

            def sample() -> ValidationError | None:
                try:
                    validate(_pruned(arguments, self.limits.max_details))
                except ValidationError as cut:
                    return cut
                return None

            details = pydantic_details(exc, self.limits.max_details, sample)
            raise InvalidArguments("the arguments do not match the tool's input schema", details=details) from None


def result_size(result: CallToolResult, limit: int) -> int:
    """About the bytes ``result`` takes on the wire: its texts and blobs, plus its structured content
    when that is not already mirrored in text (counting stops early once past ``limit``)."""
    size = 0
    for block in result.content:
        text = _attribute(block, "text")
        data = _attribute(block, "data")
        resource = _attribute(block, "resource")
        if resource is not None:
            text = _attribute(resource, "text") or _attribute(resource, "blob")
        for value in (text, data):
            if isinstance(value, str):
                size += len(value)
        if size > limit:
            return size
    if result.structured_content is not None and size < limit // 2:
        try:
            size += len(orjson.dumps(result.structured_content, default=str))
        except orjson.JSONEncodeError:  # an integer beyond 64 bits (the SDK writes it): pydantic's writer sizes it
            size += len(pydantic_core.to_json(result.structured_content, fallback=str))
    return size


def _attribute(model: Any, name: str) -> Any:
    """``getattr(model, name, None)`` for a pydantic model's field or extra, without pydantic's
    ``__getattr__`` fallback (an exception per absent name): a field is in ``__dict__``, an extra in
    ``__pydantic_extra__``."""
    value = model.__dict__.get(name)
    if value is None:
        extra = getattr(model, "__pydantic_extra__", None)
        if extra:
            value = extra.get(name)
    return value


def _keyword(schema_path: Any) -> str:
    path = list(schema_path)
    return str(path[-1]) if path else "schema"


def _safe_message(schema_path: Any, schema: Mapping[str, Any]) -> str:
    """Say what the schema wanted without echoing the caller's value (it may be sensitive)."""
    keyword = _keyword(schema_path)
    expected: Any = schema
    for part in schema_path:
        if (isinstance(expected, Mapping) and part in expected) or (
            isinstance(expected, list) and isinstance(part, int) and 0 <= part < len(expected)
        ):
            expected = expected[part]
        else:
            return f"does not satisfy '{keyword}'"
    if keyword == "required":
        return f"required properties: {', '.join(map(str, expected))}"  # pyright: ignore[reportUnknownArgumentType]
    if keyword in ("type", "enum", "const", "format", "minimum", "maximum", "minLength", "maxLength", "pattern"):
        return f"{keyword} must satisfy {expected!r}"
    if keyword == "additionalProperties":
        return "unexpected property"
    return f"does not satisfy '{keyword}'"


def _schema_problem(exc: BaseException) -> str:
    message = getattr(exc, "message", None) or str(exc)
    return str(message).splitlines()[0][:200]
