"""The ``validate`` slot: arguments checked against a JSON Schema (2020-12) before the call runs.

Local tools are validated by the pydantic model built from their signature (the SDK does it as
the function is called, and a failure is mapped to ``invalid_arguments`` by the errors slot).
This slot covers tools whose schema is all there is — tools from gateway upstreams, and local
tools registered with a hand-written ``input_schema`` — whenever ``call.policy["json_schema"]``
holds a schema. Failures answer ``invalid_arguments`` with one detail per problem (the JSON path
of the field and what was wrong), never the offending value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from mcplane.errors import ConfigError, InvalidArguments
from mcplane.pipeline import Call, CallNext

__all__ = ["ValidateMiddleware"]

MAX_DETAILS = 20


class ValidateMiddleware:
    def __init__(self) -> None:
        self._validators: dict[int, tuple[Mapping[str, Any], Draft202012Validator]] = {}

    def _validator(self, schema: Mapping[str, Any]) -> Draft202012Validator:
        cached = self._validators.get(id(schema))
        if cached is not None and cached[0] is schema:
            return cached[1]
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            raise ConfigError(f"invalid input schema: {exc.message}") from None
        validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
        self._validators[id(schema)] = (schema, validator)
        return validator

    async def __call__(self, call: Call, call_next: CallNext) -> Any:
        schema = call.policy.get("json_schema")
        if call.kind != "tool" or not isinstance(schema, Mapping):
            return await call_next(call)
        validator = self._validator(schema)
        errors = sorted(validator.iter_errors(dict(call.arguments)), key=lambda e: list(e.absolute_path))
        if errors:
            details = [
                {
                    "field": ".".join(str(part) for part in error.absolute_path) or "(arguments)",
                    "message": _safe_message(error.validator, error.validator_value),
                    "type": str(error.validator),
                }
                for error in errors[:MAX_DETAILS]
            ]
            raise InvalidArguments("the arguments do not match the tool's input schema", details=details)
        return await call_next(call)


def _safe_message(keyword: Any, expected: Any) -> str:
    """Say what the schema wanted without echoing the caller's value (it may be sensitive)."""
    if keyword == "required":
        return f"required properties: {', '.join(map(str, expected))}"
    if keyword in ("type", "enum", "const", "format", "minimum", "maximum", "minLength", "maxLength", "pattern"):
        return f"{keyword} must satisfy {expected!r}"
    if keyword == "additionalProperties":
        return "unexpected property"
    return f"does not satisfy '{keyword}'"
