"""The plane's per-call ``Context`` is built without pydantic's validation round
(:meth:`Context.for_call`, :func:`mcplane.sdk_adapter.context.private_state`) and read without its
``__getattr__`` fallback (:func:`mcplane.sdk_adapter.context.request_context_of`): each must hold and
read exactly what the SDK's own constructor and attribute access would."""

from __future__ import annotations

from typing import Any

import pytest
from mcp.server.mcpserver import Context as SDKContext
from pydantic import TypeAdapter

from mcplane import Context, Plane
from mcplane.context import Principal
from mcplane.sdk_adapter.context import PRIVATE_NAMES, input_params_of, request_context_of, server_of


def arguments(plane: Plane) -> dict[str, Any]:
    return {
        "request_context": None,
        "mcp_server": plane.sdk,
        "input_params": {"inputResponses": {}},
        "subscriptions": object(),
        "principal": Principal(subject="alice", roles=frozenset({"r"})),
        "correlation_id": "c0ffee",
        "dependencies": {"db": 1},
        "scope": {"type": "http", "headers": [(b"user-agent", b"ua")]},
        "meta": {"traceparent": "00-1-2-01"},
        "session_id": "s-1",
    }


def test_the_sdk_context_keeps_the_private_state_the_adapter_writes() -> None:
    assert tuple(SDKContext.__private_attributes__) == PRIVATE_NAMES
    assert tuple(Context.__private_attributes__) == PRIVATE_NAMES


@pytest.mark.parametrize("with_scope", [True, False], ids=["http", "stdio"])
def test_for_call_makes_what_the_constructor_makes(with_scope: bool) -> None:
    plane = Plane("compat")
    given = arguments(plane)
    if not with_scope:
        given["scope"] = None
    fast = Context.for_call(**given)
    slow = Context(**given)
    assert fast.__pydantic_private__ == slow.__pydantic_private__
    assert fast.__pydantic_fields_set__ == slow.__pydantic_fields_set__
    assert fast.__pydantic_extra__ == slow.__pydantic_extra__
    assert fast.__dict__ == slow.__dict__
    assert fast.model_dump() == slow.model_dump()
    for name in ("principal", "correlation_id", "deadline", "session_id", "scope", "headers", "request_meta"):
        assert getattr(fast, name) == getattr(slow, name), name
    assert fast.dependency("db") == 1
    assert fast.mcp_server is plane.sdk
    assert server_of(fast) is server_of(slow) is plane.sdk
    assert request_context_of(fast) is None
    assert request_context_of(slow) is None
    # pydantic validates an existing context to itself, as the SDK's tool layer does
    assert TypeAdapter(SDKContext[Any, Any]).validate_python(fast) is fast
    changed = fast.replace(deadline=5.0)
    assert changed.deadline == 5.0
    assert changed.__pydantic_private__ == slow.__pydantic_private__
    with pytest.raises(AttributeError, match="read-only"):
        fast._principal = given["principal"]  # pyright: ignore[reportPrivateUsage]


def test_request_context_of_reads_what_the_attribute_holds() -> None:
    plane = Plane("compat")
    marker = object()
    ctx = SDKContext(request_context=marker, mcp_server=plane.sdk)  # pyright: ignore[reportArgumentType]
    assert request_context_of(ctx) is marker
    assert request_context_of(ctx) is ctx._request_context  # pyright: ignore[reportPrivateUsage]
    assert request_context_of(SDKContext()) is None


def test_input_params_of_reads_what_the_attribute_holds() -> None:
    marker = object()
    ctx = SDKContext(input_params=marker)  # pyright: ignore[reportArgumentType]
    assert input_params_of(ctx) is marker
    assert input_params_of(ctx) is ctx._input_params  # pyright: ignore[reportPrivateUsage]
    plain = SDKContext()
    assert input_params_of(plain) is None
    assert plain._input_params is None  # pyright: ignore[reportPrivateUsage]


def test_the_plane_makes_its_contexts_with_for_call() -> None:
    plane = Plane("compat")
    ctx = plane.make_context(None, None, scope={"type": "http", "headers": []}, meta={}, session_id="s")
    expected = Context(
        request_context=None,
        mcp_server=plane.sdk,
        input_params=None,
        subscriptions=ctx.__pydantic_private__["_subscriptions"] if ctx.__pydantic_private__ else None,
        correlation_id=ctx.correlation_id,
        scope={"type": "http", "headers": []},
        meta={},
        session_id="s",
    )
    assert ctx.__pydantic_private__ == expected.__pydantic_private__
    assert (ctx.session_id, ctx.scope, ctx.request_meta, ctx.principal) == (
        expected.session_id,
        expected.scope,
        expected.request_meta,
        expected.principal,
    )
    assert len(ctx.correlation_id) == 16
