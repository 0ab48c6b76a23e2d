"""The exception tree: one root, a stable code per class, the wire form, no surprises."""

from __future__ import annotations

import pytest

import mcplane.errors as errors_module
from mcplane.errors import (
    BudgetExceeded,
    CircuitOpen,
    ConfigError,
    DeadlineExceeded,
    DependencyUnavailable,
    Forbidden,
    InternalError,
    InvalidArguments,
    InvalidRequest,
    MCPlaneError,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Timeout,
    ToolQuarantined,
    Unauthenticated,
    UpstreamError,
)

# The codes DESIGN.md promises agents; changing one breaks every client that acts on it.
CODES: dict[type[MCPlaneError], tuple[str, int, bool]] = {
    InvalidArguments: ("invalid_arguments", -32602, False),
    Unauthenticated: ("unauthenticated", -32000, False),
    Forbidden: ("forbidden", -32000, False),
    RateLimited: ("rate_limited", -32000, True),
    BudgetExceeded: ("budget_exceeded", -32000, False),
    Timeout: ("timeout", -32000, True),
    DeadlineExceeded: ("deadline_exceeded", -32000, False),
    DependencyUnavailable: ("dependency_unavailable", -32000, True),
    CircuitOpen: ("circuit_open", -32000, True),
    UpstreamError: ("upstream_error", -32000, False),
    ToolQuarantined: ("tool_quarantined", -32000, False),
    NotFound: ("not_found", -32602, False),
    InternalError: ("internal_error", -32603, False),
    InvalidRequest: ("invalid_request", -32600, False),
    PayloadTooLarge: ("payload_too_large", -32600, False),
}


@pytest.mark.parametrize(("cls", "expected"), CODES.items(), ids=lambda v: getattr(v, "__name__", ""))
def test_each_class_has_its_stable_code(cls: type[MCPlaneError], expected: tuple[str, int, bool]) -> None:
    assert (cls.code, cls.jsonrpc_code, cls.retryable) == expected
    assert issubclass(cls, MCPlaneError)


def test_every_exported_error_is_in_the_tree() -> None:
    exported = {getattr(errors_module, name) for name in errors_module.__all__}
    classes = {item for item in exported if isinstance(item, type)}
    assert classes == {*CODES, MCPlaneError, ConfigError}
    assert all(issubclass(cls, MCPlaneError) for cls in classes)
    # Besides the tree: where a tool result carries its error object, and how to read it.
    assert exported - classes == {errors_module.ERROR_META_KEY, errors_module.error_object_of}


def test_codes_are_unique() -> None:
    codes = [cls.code for cls in CODES]
    assert len(codes) == len(set(codes))


def test_default_message_and_wire_form() -> None:
    error = RateLimited(retry_after_ms=1500)
    assert str(error) == "rate limit exceeded"
    assert error.to_dict("c0ffee") == {
        "code": "rate_limited",
        "message": "rate limit exceeded",
        "retryable": True,
        "retry_after_ms": 1500,
        "correlation_id": "c0ffee",
    }


def test_wire_form_omits_what_is_unknown() -> None:
    assert NotFound().to_dict() == {"code": "not_found", "message": "not found", "retryable": False}


def test_message_and_details_are_the_raisers_choice() -> None:
    error = InvalidArguments("amount must be positive", details=[{"field": "amount"}])
    assert error.to_dict()["message"] == "amount must be positive"
    assert error.to_dict()["details"] == [{"field": "amount"}]


def test_repr_names_class_code_and_message() -> None:
    assert repr(Forbidden("no")) == "Forbidden(code='forbidden', message='no')"


def test_config_error_is_an_operator_error() -> None:
    error = ConfigError("bad target")
    assert error.code == "config_error"
    assert error.message == "bad target"


def test_catching_the_root_catches_every_leaf() -> None:
    for cls in CODES:
        with pytest.raises(MCPlaneError):
            raise cls()
