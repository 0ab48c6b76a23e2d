"""The per-call context: principal, correlation id, deadline and dependencies."""

from __future__ import annotations

import dataclasses
import time

import pytest

from mcplane.context import ANONYMOUS, Context, Principal


def test_anonymous_principal() -> None:
    assert ANONYMOUS.subject == "anonymous"
    assert ANONYMOUS.anonymous is True
    assert ANONYMOUS.roles == frozenset()
    assert ANONYMOUS.tenant is None


def test_a_named_principal_is_not_anonymous_and_is_immutable() -> None:
    alice = Principal("alice", roles=frozenset({"admin"}), scopes=frozenset({"billing:read"}), tenant="acme")
    assert alice.anonymous is False
    with pytest.raises(dataclasses.FrozenInstanceError):
        alice.subject = "mallory"  # type: ignore[misc]


def test_defaults() -> None:
    ctx = Context()
    assert ctx.principal is ANONYMOUS
    assert ctx.correlation_id == ""
    assert ctx.deadline is None
    assert ctx.remaining() is None
    assert ctx.session_id is None


def test_remaining_counts_down_and_never_goes_negative() -> None:
    soon = Context(deadline=time.monotonic() + 30)
    remaining = soon.remaining()
    assert remaining is not None
    assert 29 < remaining <= 30
    assert Context(deadline=time.monotonic() - 5).remaining() == 0.0


def test_dependencies_by_name() -> None:
    pool = object()
    ctx = Context(principal=Principal("svc"), correlation_id="abc", dependencies={"pool": pool})
    assert ctx.dependency("pool") is pool
    assert ctx.principal.subject == "svc"
    assert ctx.correlation_id == "abc"
    with pytest.raises(LookupError, match="no dependency named 'cache' is open"):
        ctx.dependency("cache")
