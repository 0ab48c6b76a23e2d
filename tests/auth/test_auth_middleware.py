"""The authenticate slot: the transport's principal lands on the call's context."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from mcplane.auth import SCOPE_KEY, AuthenticateMiddleware, AuthenticationFailed, current_principal, principal_of
from mcplane.context import ANONYMOUS, Context, Principal
from mcplane.pipeline import Call

ALICE = Principal("alice", roles=frozenset({"billing"}))
BOB = Principal("bob")


def _request_context(scope: dict[str, object]) -> SimpleNamespace:
    return SimpleNamespace(request=SimpleNamespace(scope=scope))


async def _whoami(call: Call) -> str:
    return call.context.principal.subject


def test_principal_of_prefers_the_http_request_over_the_context_variable() -> None:
    token = current_principal.set(BOB)
    try:
        assert principal_of(_request_context({SCOPE_KEY: ALICE})) is ALICE
        assert principal_of(_request_context({})) is BOB
        assert principal_of(None) is BOB
    finally:
        current_principal.reset(token)
    assert principal_of(_request_context({SCOPE_KEY: "not a principal"})) is None


async def test_the_request_principal_is_put_on_the_context() -> None:
    context = Context(request_context=_request_context({SCOPE_KEY: ALICE}))  # type: ignore[arg-type]
    call = Call("tool", "t", {}, context)
    assert await AuthenticateMiddleware(required=True)(call, _whoami) == "alice"
    assert call.context.principal is ALICE, "the layers outside see who called once the call returns"
    assert context.principal is ANONYMOUS, "the context itself never changes: the call carries a new one"


async def test_the_connection_principal_is_used_for_websocket_and_stdio() -> None:
    token = current_principal.set(BOB)
    try:
        result = await AuthenticateMiddleware(required=True)(Call("tool", "t", {}, Context()), _whoami)
    finally:
        current_principal.reset(token)
    assert result == "bob"


async def test_a_principal_already_on_the_context_is_kept() -> None:
    context = Context(principal=BOB, request_context=_request_context({SCOPE_KEY: ALICE}))  # type: ignore[arg-type]
    assert await AuthenticateMiddleware(required=False)(Call("tool", "t", {}, context), _whoami) == "bob"


async def test_required_refuses_an_anonymous_call() -> None:
    with pytest.raises(AuthenticationFailed) as caught:
        await AuthenticateMiddleware(required=True)(Call("tool", "t", {}, Context()), _whoami)
    assert caught.value.reason == "missing_token"
    assert await AuthenticateMiddleware(required=False)(Call("tool", "t", {}, Context()), _whoami) == ANONYMOUS.subject
